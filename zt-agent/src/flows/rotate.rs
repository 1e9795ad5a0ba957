//! Flow-log rotation and retention: the agent manages its own log files so a busy host
//! never fills its disk with flow records.
//!
//! The active file keeps its configured name (`flows.log`). When the next line would make
//! it larger than `max_file_bytes`, it is flushed, renamed to
//! `flows.log.<UTC time of rotation>` (`flows.log.20250102T030405.678Z`) and a new active
//! file is started. Names are strictly increasing (a rotation within the same millisecond
//! as the previous one, or after the clock stepped back, takes the next free millisecond),
//! so `ls` order is chronological order. Rotation happens only between lines, so no line
//! is lost or split across files; a single line larger than the limit gets a file of its
//! own. Timestamped names (rather than `.1`, `.2` ...) mean a
//! rotation renames one file instead of shifting all of them, and tools reading a rotated
//! file never see it change name again.
//!
//! Retention runs at start-up, after every rotation and periodically: rotated files are
//! kept newest first while all limits hold — at most `max_files` of them, none older
//! than `max_age` (by its rotation time), and all files together, the active one included,
//! at most `max_total_bytes` (the active file counted at its rotation size, so the cap holds
//! between rotations too). Files that are not this log's rotations are never touched.
//! The clock is injectable so the rules are testable without waiting.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

/// Default size at which the active file is rotated: 100 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 << 20;
/// Default number of rotated files kept.
pub const DEFAULT_MAX_FILES: usize = 100;
/// Default age after which rotated files are removed: 90 days.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);
/// Default cap on all flow-log files together: 10 GiB.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 10 << 30;

/// Rotation and retention limits; `None` switches a limit off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate the active file before it would exceed this size.
    pub max_file_bytes: Option<u64>,
    /// Keep at most this many rotated files.
    pub max_files: Option<usize>,
    /// Remove rotated files older than this.
    pub max_age: Option<Duration>,
    /// Keep all files together (the active one included) within this size.
    pub max_total_bytes: Option<u64>,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_file_bytes: Some(DEFAULT_MAX_FILE_BYTES),
            max_files: Some(DEFAULT_MAX_FILES),
            max_age: Some(DEFAULT_MAX_AGE),
            max_total_bytes: Some(DEFAULT_MAX_TOTAL_BYTES),
        }
    }
}

/// Where the log reads the time of day (the system clock, or a test's own).
pub type Clock = Box<dyn Fn() -> SystemTime + Send + Sync>;

/// What a write did besides writing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub rotated: bool,
    /// Rotated files removed by retention.
    pub removed: usize,
}

/// A rotated file found next to the active one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotatedFile {
    pub path: PathBuf,
    pub rotated_at: SystemTime,
    pub bytes: u64,
}

/// The active flow-log file with rotation and retention.
pub struct RotatingLog {
    path: PathBuf,
    rotation: Rotation,
    clock: Clock,
    out: BufWriter<File>,
    /// Bytes in the active file, including what is still buffered.
    size: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `2025-01-02T03:04:05.678Z` -> `20250102T030405.678Z`: sortable, no `:` in file names.
fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string().replace(['-', ':'], "")
}

fn parse_stamp(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let rfc = format!("{}-{}-{}T{}:{}:{}", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..]);
    humantime::parse_rfc3339(&rfc).ok()
}

impl RotatingLog {
    /// Opens (appending) the active file at `path`, creating its directory, and applies
    /// retention to what earlier runs left.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<(RotatingLog, Maintenance)> {
        RotatingLog::open_with_clock(path, rotation, Box::new(SystemTime::now))
    }

    pub fn open_with_clock(path: &Path, rotation: Rotation, clock: Clock) -> io::Result<(RotatingLog, Maintenance)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let log = RotatingLog { path: path.to_path_buf(), rotation, clock, out: BufWriter::new(file), size };
        let removed = log.retain()?;
        Ok((log, Maintenance { rotated: false, removed }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` (without its newline), rotating first if the active file would grow
    /// beyond its limit. Buffered: call [`RotatingLog::flush`] after a batch.
    pub fn write_line(&mut self, line: &str) -> io::Result<Maintenance> {
        let len = line.len() as u64 + 1;
        let mut done = Maintenance::default();
        if self.rotation.max_file_bytes.is_some_and(|max| self.size > 0 && self.size + len > max) {
            done = self.rotate()?;
        }
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.size += len;
        Ok(done)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Renames the active file to its rotated name and starts a new one, then applies
    /// retention.
    pub fn rotate(&mut self) -> io::Result<Maintenance> {
        self.out.flush()?;
        let target = self.next_rotated_name()?;
        std::fs::rename(&self.path, &target)?;
        // If the new file cannot be created, lines keep going to the renamed one (nothing is
        // lost) and the next write tries again.
        let file = open_append(&self.path)?;
        self.out = BufWriter::new(file);
        self.size = 0;
        let removed = self.retain()?;
        Ok(Maintenance { rotated: true, removed })
    }

    fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The rotated name for now, later than every existing one.
    fn next_rotated_name(&self) -> io::Result<PathBuf> {
        let mut at = (self.clock)();
        if let Some(newest) = self.rotated_files()?.first() {
            at = at.max(newest.rotated_at + Duration::from_millis(1));
        }
        Ok(self.dir().join(format!("{}.{}", self.file_name(), stamp(at))))
    }

    /// This log's rotated files, newest first.
    pub fn rotated_files(&self) -> io::Result<Vec<RotatedFile>> {
        let prefix = format!("{}.", self.file_name());
        let mut found = Vec::new();
        for entry in std::fs::read_dir(self.dir())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rotated_at) = name.strip_prefix(&prefix).and_then(parse_stamp) else { continue };
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            found.push(RotatedFile { path: entry.path(), rotated_at, bytes: meta.len() });
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.rotated_at));
        Ok(found)
    }

    /// Removes the rotated files beyond the retention limits; returns how many.
    pub fn retain(&self) -> io::Result<usize> {
        let now = (self.clock)();
        // The active file counts with the size it may grow to, so the cap holds between
        // rotations too.
        let mut total = self.size.max(self.rotation.max_file_bytes.unwrap_or(0));
        let mut removed = 0;
        for (i, f) in self.rotated_files()?.into_iter().enumerate() {
            total += f.bytes;
            let too_many = self.rotation.max_files.is_some_and(|max| i >= max);
            let too_old =
                self.rotation.max_age.is_some_and(|max| now.duration_since(f.rotated_at).unwrap_or_default() > max);
            let too_big = self.rotation.max_total_bytes.is_some_and(|max| total > max);
            if too_many || too_old || too_big {
                std::fs::remove_file(&f.path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    const T0: u64 = 1_735_787_045; // 2025-01-02T03:04:05Z

    /// A clock the test moves by hand.
    fn manual_clock() -> (Arc<Mutex<SystemTime>>, Clock) {
        let now = Arc::new(Mutex::new(SystemTime::UNIX_EPOCH + Duration::from_secs(T0)));
        let read = now.clone();
        (now, Box::new(move || *read.lock().unwrap()))
    }

    fn advance(clock: &Arc<Mutex<SystemTime>>, by: Duration) {
        *clock.lock().unwrap() += by;
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zt-rotate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn unlimited() -> Rotation {
        Rotation { max_file_bytes: None, max_files: None, max_age: None, max_total_bytes: None }
    }

    /// Every line of the active file and all rotated files, oldest file first.
    fn all_lines(log: &RotatingLog) -> Vec<String> {
        let mut files: Vec<PathBuf> = log.rotated_files().unwrap().into_iter().rev().map(|f| f.path).collect();
        files.push(log.path().to_path_buf());
        files
            .iter()
            .flat_map(|p| std::fs::read_to_string(p).unwrap().lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn rotated_names_carry_the_rotation_time_and_parse_back() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(T0 * 1000 + 678);
        assert_eq!(stamp(t), "20250102T030405.678Z");
        assert_eq!(parse_stamp("20250102T030405.678Z"), Some(t));
        assert_eq!(parse_stamp("2025-01-02"), None);
    }

    #[test]
    fn the_active_file_rotates_before_a_line_would_exceed_the_limit_and_no_line_is_lost_or_split() {
        let dir = temp_dir("size");
        let (clock, read) = manual_clock();
        let rotation = Rotation { max_file_bytes: Some(100), ..unlimited() };
        let (mut log, _) = RotatingLog::open_with_clock(&dir.join("flows.log"), rotation, read).unwrap();
        let mut rotations = 0;
        let written: Vec<String> =
            (0..50).map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 7))).collect();
        for line in &written {
            advance(&clock, Duration::from_millis(1));
            rotations += log.write_line(line).unwrap().rotated as usize;
        }
        log.flush().unwrap();
        assert!(rotations >= 10, "{rotations}");
        assert_eq!(log.rotated_files().unwrap().len(), rotations);
        for f in log.rotated_files().unwrap() {
            assert!(f.bytes <= 100, "{} is {} bytes", f.path.display(), f.bytes);
            let text = std::fs::read_to_string(&f.path).unwrap();
            assert!(text.ends_with('\n') && text.lines().all(|l| l.starts_with('{') && l.ends_with('}')), "{text}");
        }
        assert_eq!(all_lines(&log), written);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_line_longer_than_the_limit_gets_a_file_of_its_own() {
        let dir = temp_dir("long");
        let (_, read) = manual_clock();
        let rotation = Rotation { max_file_bytes: Some(10), ..unlimited() };
        let (mut log, _) = RotatingLog::open_with_clock(&dir.join("flows.log"), rotation, read).unwrap();
        let long = "y".repeat(50);
        for line in ["a", long.as_str(), "b"] {
            log.write_line(line).unwrap();
        }
        log.flush().unwrap();
        assert_eq!(all_lines(&log), ["a", long.as_str(), "b"]);
        let names: Vec<PathBuf> = log.rotated_files().unwrap().into_iter().rev().map(|f| f.path).collect();
        assert_eq!(names, [dir.join("flows.log.20250102T030405.000Z"), dir.join("flows.log.20250102T030405.001Z")]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn only_the_newest_max_files_rotations_are_kept() {
        let dir = temp_dir("count");
        let (clock, read) = manual_clock();
        let rotation = Rotation { max_files: Some(3), ..unlimited() };
        let (mut log, _) = RotatingLog::open_with_clock(&dir.join("flows.log"), rotation, read).unwrap();
        let mut removed = 0;
        for i in 0..6 {
            log.write_line(&format!("line {i}")).unwrap();
            advance(&clock, Duration::from_secs(1));
            removed += log.rotate().unwrap().removed;
        }
        assert_eq!(removed, 3);
        let kept: Vec<String> =
            log.rotated_files().unwrap().iter().map(|f| std::fs::read_to_string(&f.path).unwrap()).collect();
        assert_eq!(kept, ["line 5\n", "line 4\n", "line 3\n"]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rotated_files_older_than_max_age_are_removed() {
        let dir = temp_dir("age");
        let (clock, read) = manual_clock();
        let rotation = Rotation { max_age: Some(Duration::from_secs(90 * 86400)), ..unlimited() };
        let (mut log, _) = RotatingLog::open_with_clock(&dir.join("flows.log"), rotation, read).unwrap();
        log.write_line("old").unwrap();
        log.rotate().unwrap();
        advance(&clock, Duration::from_secs(60 * 86400));
        log.write_line("newer").unwrap();
        log.rotate().unwrap();
        advance(&clock, Duration::from_secs(30 * 86400));
        assert_eq!(log.retain().unwrap(), 0, "exactly 90 days old is still kept");
        advance(&clock, Duration::from_secs(1));
        assert_eq!(log.retain().unwrap(), 1);
        let kept = log.rotated_files().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(std::fs::read_to_string(&kept[0].path).unwrap(), "newer\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_total_size_cap_removes_the_oldest_rotations_first_and_counts_the_active_file() {
        let dir = temp_dir("total");
        let (clock, read) = manual_clock();
        let rotation = Rotation { max_file_bytes: Some(10), max_total_bytes: Some(25), ..unlimited() };
        let (mut log, _) = RotatingLog::open_with_clock(&dir.join("flows.log"), rotation, read).unwrap();
        for i in 0..5 {
            advance(&clock, Duration::from_secs(1));
            log.write_line(&format!("line-{i}xxx")).unwrap(); // 10 bytes with the newline
        }
        log.flush().unwrap();
        // The active file may grow to 10 bytes; with the newest rotation that makes 20, and a
        // second rotation would make 30.
        let kept: Vec<String> =
            log.rotated_files().unwrap().iter().map(|f| std::fs::read_to_string(&f.path).unwrap()).collect();
        assert_eq!(kept, ["line-3xxx\n"]);
        assert_eq!(std::fs::read_to_string(log.path()).unwrap(), "line-4xxx\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reopening_appends_and_applies_retention_to_what_an_earlier_run_left() {
        let dir = temp_dir("reopen");
        let path = dir.join("flows.log");
        std::fs::write(&path, "kept\n").unwrap();
        std::fs::write(dir.join("flows.log.20000101T000000.000Z"), "ancient\n").unwrap();
        std::fs::write(dir.join("flows.log.notes"), "not a rotation\n").unwrap();
        std::fs::write(dir.join("other.log.20000101T000000.000Z"), "another log\n").unwrap();
        let (_, read) = manual_clock();
        let rotation = Rotation { max_age: Some(DEFAULT_MAX_AGE), ..unlimited() };
        let (mut log, done) = RotatingLog::open_with_clock(&path, rotation, read).unwrap();
        assert_eq!(done.removed, 1);
        log.write_line("new").unwrap();
        log.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept\nnew\n");
        assert!(dir.join("flows.log.notes").exists());
        assert!(dir.join("other.log.20000101T000000.000Z").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
