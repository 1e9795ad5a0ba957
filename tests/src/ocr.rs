//! Reading text off a picture with tesseract (`cargo xtask setup` installs `tesseract-ocr`),
//! for tests that must know a name is *visible*, not merely present in a file.

use std::{path::Path, time::Duration};

use crate::{
    command,
    error::{Error, Result},
};

pub const TESSERACT: &str = "tesseract";

/// The text tesseract reads in the image at `path`, as sparse text (labels scattered over a
/// picture rather than paragraphs).
pub fn read_text(path: &Path) -> Result<String> {
    let output = command::run(
        TESSERACT,
        [path.as_os_str(), "stdout".as_ref(), "--psm".as_ref(), "11".as_ref()],
        Duration::from_secs(60),
    )?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("{TESSERACT} {} stdout --psm 11", path.display()),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
