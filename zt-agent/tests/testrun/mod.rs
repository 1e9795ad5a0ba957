pub mod fixture;
pub mod packet;
