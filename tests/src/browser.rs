//! Looking at what users look at: a page or picture opened by headless Chromium from a
//! `file://` URL and captured as a screenshot, decoded to pixels a test can count.
//!
//! The browser gets a throw-away profile and no background services; as root it also runs
//! in a network namespace of its own with nothing in it, so a page can never reach the
//! network, whatever it references.

use std::{path::Path, time::Duration};

use crate::{
    command,
    error::{Error, Result},
    netns::Netns,
    privileged::privilege_problem,
    scratch::Scratch,
};

/// The browser `cargo xtask setup` installs (Debian's `chromium`).
pub const CHROMIUM: &str = "chromium";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A screenshot as 8-bit RGB pixels, row by row.
#[derive(Clone, Debug)]
pub struct Screenshot {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Screenshot {
    /// Reads a PNG file (RGB or RGBA, 8 bits per channel).
    pub fn read(path: &Path) -> Result<Screenshot> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let decode =
            |e: png::DecodingError| Error::io(format!("cannot decode {}", path.display()), std::io::Error::other(e));
        let mut reader = png::Decoder::new(file).read_info().map_err(decode)?;
        let mut buffer = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buffer).map_err(decode)?;
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => {
                return Err(Error::io(
                    format!("{} has colour type {other:?}, not RGB(A)", path.display()),
                    std::io::ErrorKind::InvalidData.into(),
                ));
            }
        };
        let rgb = buffer[..info.buffer_size()].chunks(channels).flat_map(|p| [p[0], p[1], p[2]]).collect();
        Ok(Screenshot { width: info.width, height: info.height, rgb })
    }

    /// Pixels within `tolerance` of `colour` in every channel.
    pub fn count_near(&self, colour: [u8; 3], tolerance: u8) -> usize {
        self.rgb.chunks(3).filter(|p| p.iter().zip(colour).all(|(&a, b)| a.abs_diff(b) <= tolerance)).count()
    }

    /// Pixels that are not (near) white.
    pub fn count_ink(&self) -> usize {
        self.rgb.chunks(3).filter(|p| p.iter().any(|&c| c < 235)).count()
    }

    /// Only the dark pixels (text), black on white, as a PNG at `path`: lines and boxes in
    /// colour vanish, which is what lets OCR read names that arrows run past.
    pub fn write_dark_text(&self, path: &Path) -> Result<()> {
        let file =
            std::fs::File::create(path).map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), self.width, self.height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let grey: Vec<u8> = self.rgb.chunks(3).map(|p| if p.iter().all(|&c| c < 110) { 0 } else { 255 }).collect();
        let encode =
            |e: png::EncodingError| Error::io(format!("cannot write {}", path.display()), std::io::Error::other(e));
        encoder.write_header().and_then(|mut w| w.write_image_data(&grey)).map_err(encode)
    }
}

/// Opens `page` in headless Chromium in a `width` x `height` window (CSS pixels, drawn at
/// `scale` device pixels each) and returns the screenshot.
pub fn screenshot(page: &Path, width: u32, height: u32, scale: u32, scratch: &Scratch) -> Result<Screenshot> {
    let page = page.canonicalize().map_err(|e| Error::io(format!("cannot find {}", page.display()), e))?;
    let out = scratch.join(format!("{}.png", page.file_stem().unwrap_or_default().to_string_lossy()));
    let args: Vec<String> = vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--hide-scrollbars".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-extensions".into(),
        format!("--user-data-dir={}", scratch.join("chromium-profile").display()),
        format!("--force-device-scale-factor={scale}"),
        format!("--window-size={width},{height}"),
        format!("--screenshot={}", out.display()),
        format!("file://{}", page.display()),
    ];
    let output = match privilege_problem() {
        None => Netns::new("browser")?.exec_timeout(CHROMIUM, &args, TIMEOUT)?,
        Some(_) => command::run(CHROMIUM, &args, TIMEOUT)?,
    };
    if !out.is_file() {
        return Err(Error::Command {
            command: format!("{CHROMIUM} {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Screenshot::read(&out)
}
