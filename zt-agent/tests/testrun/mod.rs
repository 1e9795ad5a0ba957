//! The BPF_PROG_TEST_RUN fixture and packet builder, shared by the datapath test binaries
//! (each uses a different part of it).
#![allow(dead_code)]

pub mod fixture;
pub mod packet;
