//! Downloading weights into the cache: cache directory, verified atomic download, SHA-256, progress bar.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{io_err, Result};
use super::{torchvision, Model, WeightsError};

/// Where downloaded weights are cached: `$STYLIZE_CACHE` if set, else the platform cache dir
/// (`$XDG_CACHE_HOME/stylize` or `~/.cache/stylize` on Linux, `~/Library/Caches/stylize` on
/// macOS, `%LOCALAPPDATA%\stylize` on Windows), else `<temp dir>/stylize-cache`.
pub fn cache_dir() -> PathBuf {
    let env_dir = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = env_dir("STYLIZE_CACHE") {
        return dir;
    }
    let platform = if cfg!(target_os = "macos") {
        env_dir("HOME").map(|h| h.join("Library").join("Caches"))
    } else if cfg!(windows) {
        env_dir("LOCALAPPDATA").or_else(|| env_dir("USERPROFILE").map(|h| h.join("AppData").join("Local")))
    } else {
        env_dir("XDG_CACHE_HOME")
            .filter(|p| p.is_absolute()) // the XDG spec says to ignore relative values
            .or_else(|| env_dir("HOME").map(|h| h.join(".cache")))
    };
    match platform {
        Some(dir) => dir.join("stylize"),
        None => std::env::temp_dir().join("stylize-cache"),
    }
}

/// Download `url` to `dest` atomically: stream into a temporary file beside `dest` while
/// hashing, check the length against Content-Length, check the SHA-256 (`sha256` is the full
/// 64-digit digest or a prefix of at least 8 hex digits), fsync, then rename. On any failure
/// the temporary file is removed, so `dest` only ever appears verified. `progress` draws an
/// indicatif bar on stderr (hidden when stderr is not a terminal).
pub fn fetch(url: &str, dest: &Path, sha256: &str, progress: bool) -> Result<()> {
    let expected = normalise_hash(sha256)?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = dest
        .file_name()
        .ok_or_else(|| WeightsError::InvalidArgument(format!("{}: not a file path", dest.display())))?;
    fs::create_dir_all(&dir).map_err(io_err(&dir, "create the cache directory"))?;
    // A unique temporary name (crate::atomic): concurrent downloads, also from pods sharing a
    // volume, never write into the same file; it is removed unless the verified file is renamed.
    let mut tmp = crate::atomic::TempFile::create(dest).map_err(io_err(&dir, "create the download file in"))?;

    let download_err = |detail: String| WeightsError::Download { url: url.to_string(), detail };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .timeout_recv_response(Some(std::time::Duration::from_secs(60)))
        .timeout_per_read(Some(std::time::Duration::from_secs(60)))
        .build()
        .new_agent();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => download_err(format!("server answered HTTP {code}")),
        other => download_err(other.to_string()),
    })?;
    let content_length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    let mut body = response.into_body().into_reader();

    let bar = progress_bar(progress, content_length, &file_name.to_string_lossy());
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.abandon();
                    return Err(download_err(format!("connection failed after {received} bytes: {e}")));
                }
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io_err(dest, "write the download of"))?;
            received += n as u64;
            bar.inc(n as u64);
        }
        if let Some(len) = content_length {
            if received != len {
                bar.abandon();
                return Err(download_err(format!("received {received} bytes but the server announced {len}")));
            }
        }
    }
    bar.finish_and_clear();
    let found = hex(&hasher.finalize());
    if !found.starts_with(&expected) {
        return Err(WeightsError::HashMismatch { url: url.to_string(), expected, found });
    }
    // fsync, rename, and the rename made durable where the platform allows.
    tmp.persist(dest).map_err(io_err(dest, "move the verified download into place as"))?;
    Ok(())
}

/// The weights the renderer uses when the user gives none: `cache_dir()/vgg19-dcbb9e9d.pth`,
/// downloaded with [`fetch`] (and so verified) if absent.
pub fn default_weights(progress: bool) -> Result<PathBuf> {
    default_weights_of(Model::Vgg19, progress)
}

/// torchvision's ImageNet weights of `model` in [`cache_dir`] (`vgg16-397923af.pth` or
/// `vgg19-dcbb9e9d.pth`), downloaded with [`fetch`] (and so verified) if absent.
pub fn default_weights_of(model: Model, progress: bool) -> Result<PathBuf> {
    default_weights_from(model, torchvision(model).url, &cache_dir(), progress)
}

/// [`default_weights_of`] with the cache in `dir` and the file fetched from `url` (a mirror of
/// torchvision's, or a test server), if absent. A failed download says what to do instead:
/// `--weights PATH`, the path where a copy can be put, and the `stylize weights fetch` command
/// that retries ([`WeightsError::DefaultUnavailable`]).
pub fn default_weights_from(model: Model, url: &str, dir: &Path, progress: bool) -> Result<PathBuf> {
    let tv = torchvision(model);
    let path = dir.join(tv.file_name);
    if path.is_file() {
        return Ok(path);
    }
    if progress {
        eprintln!("downloading {model} weights ({} MB, once) to {}", tv.size_mb, path.display());
    }
    fetch(url, &path, tv.sha256, progress).map_err(|e| match e {
        WeightsError::Download { .. } | WeightsError::HashMismatch { .. } => {
            let retry = match model {
                Model::Vgg19 => "stylize weights fetch".to_string(),
                Model::Vgg16 => "stylize weights fetch --model vgg16".to_string(),
            };
            WeightsError::DefaultUnavailable { cause: e.to_string(), path: path.clone(), retry }
        }
        other => other,
    })?;
    Ok(path)
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io_err(path, "open"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path, "read")(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex digest or prefix (>= 8 digits), for comparing with a computed digest.
fn normalise_hash(s: &str) -> Result<String> {
    let h = s.trim().to_ascii_lowercase();
    if (8..=64).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h)
    } else {
        Err(WeightsError::InvalidArgument(format!(
            "expected a sha256 as 8 to 64 hex digits (full digest or prefix), got {s:?}"
        )))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn progress_bar(enabled: bool, len: Option<u64>, name: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !enabled {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(n) => (ProgressBar::new(n), "{msg} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"),
        None => (ProgressBar::new_spinner(), "{msg} {spinner} {bytes} {bytes_per_sec}"),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}
