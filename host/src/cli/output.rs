//! `--output FILE`: the results are written to a temporary file beside
//! `FILE` and renamed over it only when the run has written everything, so
//! `FILE` is either untouched or whole, never half-written. What cannot be
//! replaced by a file (a device such as `/dev/null`, a FIFO, `/dev/stdout`)
//! is written directly, and a symlink is followed, so the file it points to
//! is replaced and the link stays.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A file being written in place of `target`: dropped without
/// [`commit`](AtomicFile::commit), it is removed and `target` is untouched.
pub(crate) struct AtomicFile {
    target: PathBuf,
    /// The temporary file, renamed over `target` on commit; `None` where
    /// `target` is written directly (a device, a FIFO, stdout).
    temp: Option<PathBuf>,
    file: Option<File>,
}

impl AtomicFile {
    /// Creates the temporary file in `target`'s directory (so the rename
    /// stays on one file system), as `.NAME.wasmpool-PID-N.tmp`.
    pub(crate) fn create(target: &Path) -> anyhow::Result<AtomicFile> {
        let show = target.display();
        let name = target
            .file_name()
            .with_context(|| format!("{show}: --output needs a file name"))?;
        if target.is_dir() {
            anyhow::bail!("{show}: is a directory; --output needs a file name");
        }
        if let Some(file) = direct(target)? {
            return Ok(AtomicFile {
                target: target.to_path_buf(),
                temp: None,
                file: Some(file),
            });
        }
        // A symlink is followed, as a shell's `>` writes through it: the
        // file it points to is replaced and the link stays a link.
        let resolved = match fs::symlink_metadata(target) {
            Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(target).ok(),
            _ => None,
        };
        let target = resolved.as_deref().unwrap_or(target);
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut attempt = 0u32;
        loop {
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".wasmpool-{}-{attempt}.tmp", std::process::id()));
            let temp = dir.join(temp_name);
            // `create_new` with the default mode (0666 less the umask): the
            // result gets the permissions a shell's `>` would give it.
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => {
                    return Ok(AtomicFile {
                        target: target.to_path_buf(),
                        temp: Some(temp),
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "{show}: cannot create the output beside it ({})",
                            temp.display()
                        )
                    });
                }
            }
        }
    }

    /// The temporary file, to write the results to.
    pub(crate) fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is open until commit")
    }

    /// Syncs the temporary file and renames it over the target.
    pub(crate) fn commit(mut self) -> anyhow::Result<()> {
        let file = self.file.take().expect("commit runs once");
        let show = self.target.display().to_string();
        let Some(temp) = self.temp.take() else {
            return Ok(());
        };
        file.sync_all()
            .with_context(|| format!("{show}: cannot write the output"))?;
        drop(file);
        fs::rename(&temp, &self.target)
            .with_context(|| format!("{show}: cannot put the output in place"))?;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let (Some(_), Some(temp)) = (self.file.take(), &self.temp) {
            let _ = fs::remove_file(temp);
        }
    }
}

/// `target` opened for writing where it cannot be replaced by a renamed
/// file: `/dev/stdout` and `/dev/stderr` (and their `/dev/fd/N` and
/// `/proc/self/fd/N` names) are this process's own stream, whatever it is
/// (a rename would replace the device node, or a file `>>` appends to);
/// another existing path that is not a regular file (`/dev/null`, a FIFO,
/// a terminal) is opened as it is.
fn direct(target: &Path) -> anyhow::Result<Option<File>> {
    let show = target.display();
    let stream = match target.to_str() {
        Some("/dev/stdout" | "/dev/fd/1" | "/proc/self/fd/1") => {
            Some(io::stdout().as_fd().try_clone_to_owned())
        }
        Some("/dev/stderr" | "/dev/fd/2" | "/proc/self/fd/2") => {
            Some(io::stderr().as_fd().try_clone_to_owned())
        }
        _ => None,
    };
    if let Some(fd) = stream {
        let fd = fd.with_context(|| format!("{show}: cannot write the output"))?;
        return Ok(Some(File::from(fd)));
    }
    match fs::metadata(target) {
        Ok(meta) if !meta.is_file() => OpenOptions::new()
            .write(true)
            .open(target)
            .map(Some)
            .with_context(|| format!("{show}: cannot open the output")),
        _ => Ok(None),
    }
}

/// Where `map` writes its results: stdout, or (a handle of) an
/// [`AtomicFile`]'s temporary file.
pub(crate) enum Sink {
    Stdout(io::StdoutLock<'static>),
    File(File),
}

impl Sink {
    /// Where `-o PATH` sends results: a temporary file beside PATH, renamed
    /// over it by [`AtomicFile::commit`] once all are written (a run that
    /// fails leaves no partial file), or stdout without `-o`.
    pub(crate) fn open(path: Option<&Path>) -> anyhow::Result<(Sink, Option<AtomicFile>)> {
        let Some(path) = path else {
            return Ok((Sink::Stdout(io::stdout().lock()), None));
        };
        let mut file = AtomicFile::create(path)?;
        let handle = file
            .file()
            .try_clone()
            .with_context(|| format!("{}: cannot write the output", path.display()))?;
        Ok((Sink::File(handle), Some(file)))
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(out) => out.write(buf),
            Sink::File(f) => f.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.write_all(buf),
            Sink::File(f) => f.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::File(f) => f.flush(),
        }
    }
}

/// Whether `a` and `b` name one file: the same path, or (when both exist)
/// the same device and inode (a symlink, a hard link, `./x` and `x`).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_target_is_untouched_until_commit_and_whole_after() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        fs::write(&target, "old\n").unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.file().write_all(b"new\n").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "old\n");
        drop(f);
        assert_eq!(fs::read_to_string(&target).unwrap(), "old\n");
        let names = || fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(names(), 1, "a dropped output leaves no temporary file");
        let mut f = AtomicFile::create(&target).unwrap();
        f.file().write_all(b"new\n").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new\n");
        assert_eq!(names(), 1);
        let err = AtomicFile::create(dir.path()).err().unwrap().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }
}
