//! `ztctl endpoint list` and `ztctl identity list`.

use clap::Subcommand;

use super::{CliError, Ctx, output, output::Format, unexpected};
use zt_api::protocol::{Reply, Request};

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Every Endpoint of the running policy: addresses, labels and the identity they resolve to.
    List,
}

#[derive(Subcommand, Debug)]
pub enum IdentityCommand {
    /// Every identity of the enforced generation: labels and the prefixes that resolve to it.
    List,
}

pub fn run_endpoint(ctx: &mut Ctx, EndpointCommand::List: EndpointCommand) -> Result<(), CliError> {
    let reply = ctx.call(&Request::EndpointList)?;
    let Reply::Endpoints { endpoints } = &reply else {
        return Err(unexpected(&reply));
    };
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, endpoints, || {
        let mut t = output::Table::new(&["NAME", "IDENTITY", "LABELS", "ADDRESSES"]);
        for e in endpoints {
            let name = match &e.key.namespace {
                Some(ns) => format!("{ns}/{}", e.key.name),
                None => e.key.name.clone(),
            };
            let identity = e.identity.map_or("-".to_string(), |i| i.to_string());
            t.row(vec![name, identity, output::labels(&e.labels), e.addresses.join(",")]);
        }
        t.render()
    })?;
    Ok(())
}

pub fn run_identity(ctx: &mut Ctx, IdentityCommand::List: IdentityCommand) -> Result<(), CliError> {
    let reply = ctx.call(&Request::IdentityList)?;
    let Reply::Identities { identities } = &reply else {
        return Err(unexpected(&reply));
    };
    let format = ctx.format_or(Format::Table);
    output::data(ctx.out, format, identities, || {
        let mut t = output::Table::new(&["IDENTITY", "LABELS", "PREFIXES"]);
        for i in identities {
            let prefixes = if i.prefixes.is_empty() { "-".to_string() } else { i.prefixes.join(",") };
            t.row(vec![i.identity.to_string(), output::labels(&i.labels), prefixes]);
        }
        t.render()
    })?;
    Ok(())
}
