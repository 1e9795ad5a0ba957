//! `ztctl completions SHELL` and `ztctl man`: generated from the command tree itself, so
//! they can never disagree with what ztctl accepts.

use std::io::Write;

use super::CliError;

pub fn completions(out: &mut dyn Write, shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut command = super::command();
    let mut buffer = Vec::new();
    clap_complete::generate(shell, &mut command, "ztctl", &mut buffer);
    out.write_all(&buffer)?;
    Ok(())
}

pub fn man(out: &mut dyn Write) -> Result<(), CliError> {
    clap_mangen::Man::new(super::command()).render(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_know_the_commands() {
        let mut out = Vec::new();
        completions(&mut out, clap_complete::Shell::Bash).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("ztctl") && text.contains("quarantine") && text.contains("rollback"), "{text}");
    }

    #[test]
    fn the_man_page_is_roff_and_names_the_commands() {
        let mut out = Vec::new();
        man(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH ztctl"), "{}", &text[..200.min(text.len())]);
        assert!(text.contains("policy") && text.contains("explain"));
    }
}
