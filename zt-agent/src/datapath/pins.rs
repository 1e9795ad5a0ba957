//! Pinned links: how enforcement outlives the agent process.
//!
//! The maps are pinned under the bpffs directory by the loader; the attachments (XDP and
//! TCX links) are pinned here, under `<bpffs>/links/`, one file per interface and hook,
//! named `ifindex-<N>-<hook>` (e.g. `ifindex-2-xdp-native`). A pinned link stays attached when the agent exits or is
//! killed, so the interface stays enforced by the last programs and policy (fail-static).
//! A restarted agent adopts each pin with `bpf_link_update`, which swaps the program inside
//! the existing link atomically: there is no moment without a program.
//!
//! The name carries the interface index, not its name: a link is attached to the device,
//! which keeps its index when renamed and gets a new one when re-created, so a pin whose
//! index is not one of the enforced interfaces' is stale and is removed, never adopted.
//! (bpffs also refuses names with a dot, which interface names such as `eth0.10` have.)
//!
//! With [`LinkLifetime::Process`] (`--no-pin`), links belong to the agent process: adopted
//! pins are unpinned (the process holds the link from then on) and everything is detached
//! and unpinned when it exits.

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
};

use aya::programs::links::FdLink;
use zt_common::map_names;

use super::IngressHook;

/// Sub-directory of the bpffs directory that holds the link pins.
pub const LINKS_DIR: &str = "links";

/// How long the attachments live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkLifetime {
    /// Pinned under `<bpffs>/links/`: enforcement continues after the agent exits.
    Pinned,
    /// Owned by the agent process: detached when it exits.
    Process,
}

/// One attachment point of the programs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkHook {
    Ingress(IngressHook),
    Egress,
}

impl LinkHook {
    const ALL: [LinkHook; 4] = [
        LinkHook::Ingress(IngressHook::XdpNative),
        LinkHook::Ingress(IngressHook::XdpGeneric),
        LinkHook::Ingress(IngressHook::Tc),
        LinkHook::Egress,
    ];

    /// The suffix of the pin name.
    pub fn name(self) -> &'static str {
        match self {
            LinkHook::Ingress(IngressHook::XdpNative) => "xdp-native",
            LinkHook::Ingress(IngressHook::XdpGeneric) => "xdp-generic",
            LinkHook::Ingress(IngressHook::Tc) => "tc-ingress",
            LinkHook::Egress => "tc-egress",
        }
    }

    fn parse(s: &str) -> Option<LinkHook> {
        LinkHook::ALL.into_iter().find(|h| h.name() == s)
    }
}

/// A link pin's identity, as encoded in its file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkPin {
    pub ifindex: u32,
    pub hook: LinkHook,
}

impl LinkPin {
    /// `ifindex-2-xdp-native` -> (2, xdp native).
    pub fn parse(file_name: &str) -> Option<LinkPin> {
        let (ifindex, hook) = file_name.strip_prefix("ifindex-")?.split_once('-')?;
        if ifindex.starts_with('+') {
            return None;
        }
        Some(LinkPin { ifindex: ifindex.parse().ok()?, hook: LinkHook::parse(hook)? })
    }
}

impl fmt::Display for LinkPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ifindex-{}-{}", self.ifindex, self.hook.name())
    }
}

/// The link pins of one bpffs directory and the links this agent keeps alive.
#[derive(Debug)]
pub struct LinkPins {
    dir: PathBuf,
    lifetime: LinkLifetime,
    /// Pins left by an earlier agent, not yet adopted or removed.
    found: Vec<LinkPin>,
    /// Links this agent holds, with their pin paths: pinned ones stay attached when these
    /// close, the others are detached by it.
    held: Vec<(PathBuf, FdLink)>,
}

impl LinkPins {
    /// The pins under `<bpffs_dir>/links`; nothing is read until [`Self::scan`].
    pub fn new(bpffs_dir: &Path, lifetime: LinkLifetime) -> LinkPins {
        LinkPins { dir: bpffs_dir.join(LINKS_DIR), lifetime, found: Vec::new(), held: Vec::new() }
    }

    pub fn lifetime(&self) -> LinkLifetime {
        self.lifetime
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the pins an earlier agent left, keeping those of the `wanted` interface indexes
    /// as candidates for adoption and removing the others — which detaches them: those
    /// interfaces are no longer to be enforced, or were re-created.
    pub fn scan(&mut self, wanted: &[u32]) -> io::Result<()> {
        self.found.clear();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match LinkPin::parse(&name) {
                Some(pin) if wanted.contains(&pin.ifindex) => self.found.push(pin),
                Some(_) => {
                    log::warn!(
                        "detaching the pinned link {name}: its interface is not enforced any more or has changed"
                    );
                    remove_file(&entry.path())?;
                }
                None => {
                    log::warn!("removing {}: not a zt link pin", entry.path().display());
                    remove_file(&entry.path())?;
                }
            }
        }
        Ok(())
    }

    /// The hooks of interface `ifindex` that an earlier agent pinned and that are not yet
    /// handled.
    pub fn found(&self, ifindex: u32) -> impl Iterator<Item = LinkHook> + '_ {
        self.found.iter().filter(move |p| p.ifindex == ifindex).map(|p| p.hook)
    }

    /// Where the pin of `hook` on interface `ifindex` lives.
    pub fn path(&self, ifindex: u32, hook: LinkHook) -> PathBuf {
        self.dir.join(LinkPin { ifindex, hook }.to_string())
    }

    /// Marks the found pin of `hook` on `ifindex` as handled (adopted or about to be
    /// removed); false if there is none.
    pub fn take(&mut self, ifindex: u32, hook: LinkHook) -> bool {
        let before = self.found.len();
        self.found.retain(|p| *p != LinkPin { ifindex, hook });
        self.found.len() != before
    }

    /// Removes the found pin of `hook` on `ifindex`, detaching it unless this agent holds it.
    pub fn discard(&mut self, ifindex: u32, hook: LinkHook) -> io::Result<()> {
        if self.take(ifindex, hook) {
            remove_file(&self.path(ifindex, hook))?;
        }
        Ok(())
    }

    /// Keeps a link this agent attached or adopted: pins it (a new link) or unpins it (an
    /// adopted one under [`LinkLifetime::Process`]) according to the lifetime.
    pub fn keep(&mut self, link: FdLink, path: PathBuf, adopted: bool) -> Result<(), super::DatapathError> {
        let link = match (self.lifetime, adopted) {
            (LinkLifetime::Pinned, true) => link,
            (LinkLifetime::Pinned, false) => {
                fs::create_dir_all(&self.dir)
                    .map_err(|source| super::DatapathError::PinDir { path: self.dir.clone(), source })?;
                link.pin(&path)
                    .map_err(|source| super::DatapathError::Pin {
                        what: "link".into(),
                        path: path.clone(),
                        source: source.into(),
                    })?
                    .into()
            }
            (LinkLifetime::Process, true) => {
                remove_file(&path)
                    .map_err(|e| super::DatapathError::Other(format!("cannot unpin {}: {e}", path.display())))?;
                link
            }
            (LinkLifetime::Process, false) => link,
        };
        self.held.push((path, link));
        Ok(())
    }

    /// Lets go of every link of interface `ifindex` (which went away): closes the links
    /// this agent holds for it and removes their pins.
    pub fn release(&mut self, ifindex: u32) -> io::Result<()> {
        let mine: Vec<PathBuf> = LinkHook::ALL.iter().map(|hook| self.path(ifindex, *hook)).collect();
        self.held.retain(|(path, _)| !mine.contains(path));
        self.found.retain(|p| p.ifindex != ifindex);
        for path in &mine {
            remove_file(path)?;
        }
        Ok(())
    }
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What [`remove_all`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub links: usize,
    pub maps: usize,
    /// False when the directory still holds files that are not zt's and was left in place.
    pub dir_removed: bool,
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} link(s) detached, {} map pin(s) removed", self.links, self.maps)
    }
}

/// Detaches every pinned link and removes every pin zt made under `dir`, then the
/// directories. Only zt's own names are removed, so a mistaken `--bpffs /sys/fs/bpf` cannot
/// take other programs' pins with it. Nothing there is not an error.
pub fn remove_all(dir: &Path) -> io::Result<Removed> {
    let mut removed = Removed::default();
    let links = dir.join(LINKS_DIR);
    if let Ok(entries) = fs::read_dir(&links) {
        for entry in entries {
            let entry = entry?;
            if LinkPin::parse(&entry.file_name().to_string_lossy()).is_some() {
                remove_file(&entry.path())?;
                removed.links += 1;
            }
        }
        let _ = fs::remove_dir(&links);
    }
    removed.maps += super::layout::remove_superseded(dir)?;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            // Maps of every layout, not only this agent's (an older agent's pins, too).
            if map_names::is_zt_map(&entry.file_name().to_string_lossy()) && !entry.path().is_dir() {
                remove_file(&entry.path())?;
                removed.maps += 1;
            }
        }
    }
    removed.dir_removed = match fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    };
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_round_trip_and_have_no_dot() {
        for hook in LinkHook::ALL {
            let pin = LinkPin { ifindex: 17, hook };
            assert!(!pin.to_string().contains('.'), "bpffs refuses dots: {pin}");
            assert_eq!(LinkPin::parse(&pin.to_string()), Some(pin));
        }
    }

    #[test]
    fn foreign_file_names_are_not_link_pins() {
        for name in
            ["eth0", "ifindex-2", "ifindex-x-tc-egress", "ifindex--tc-egress", "ifindex-+2-tc-egress", "ifindex-2-tc"]
        {
            assert_eq!(LinkPin::parse(name), None, "{name}");
        }
    }

    #[test]
    fn remove_all_of_a_missing_directory_removes_nothing_and_succeeds() {
        let dir = std::env::temp_dir().join(format!("zt-pins-missing-{}", std::process::id()));
        assert_eq!(remove_all(&dir).unwrap(), Removed { links: 0, maps: 0, dir_removed: true });
    }

    #[test]
    fn remove_all_leaves_files_that_are_not_zt_pins() {
        let dir = std::env::temp_dir().join(format!("zt-pins-foreign-{}", std::process::id()));
        fs::create_dir_all(dir.join(LINKS_DIR)).unwrap();
        fs::write(dir.join(map_names::ALL[0]), b"").unwrap();
        fs::write(dir.join(LINKS_DIR).join("ifindex-2-tc-egress"), b"").unwrap();
        fs::write(dir.join("someone-elses-map"), b"").unwrap();
        let r = remove_all(&dir).unwrap();
        assert_eq!((r.links, r.maps, r.dir_removed), (1, 1, false));
        assert!(dir.join("someone-elses-map").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
