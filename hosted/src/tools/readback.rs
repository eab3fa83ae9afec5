//! The epoch an emulated device trustee established, read back from its provisioning area
//! through QEMU's monitor once its setup image has handed over, and checked: the emulated
//! board's stand-in for a real board's flash, which keeps the completed blob by itself.
//!
//! The host takes the epoch from the device, never from the relay: the setup image writes
//! the epoch's session id and pseudonym keys into the DC-net blob only once it has checked
//! every proof and signature of the setup (`embedded/src/handover.rs`). [`completed_epoch`]
//! checks that the device changed nothing else of the blob the host wrote, that the blob
//! still reads as this node's, and that an epoch was written; `dissent qemu` then keeps it
//! beside the key file as a hosted trustee keeps its own (`setup::keep_device_epoch`). The
//! whole blob, the node's secrets included, passes through a memory file only
//! (`platform::memory_file`); only the public session id and keys are kept.
//!
//! QEMU's monitor speaks QMP (one JSON object a line) on a socket only this process holds
//! (`platform::child_socket`); `pmemsave` has QEMU write the board's memory into the memory
//! file, which QEMU inherits.
//!
//! Owns the monitor channel and the check of the blob read back.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use dissent_core::provision::Node;
use dissent_core::wire::NodeRole;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::config::Key;
use crate::platform::child_socket::{ChildSocket, Stream};
use crate::platform::memory_file::MemoryFile;

/// Longest a read-back may take (QEMU answers in milliseconds).
const TIMEOUT: Duration = Duration::from_secs(10);
/// The monitor's character device in QEMU's command line.
const MONITOR_ID: &str = "dissent-monitor";

/// QEMU's monitor and the memory file it saves the board's memory into.
pub struct ReadBack {
    socket: Option<ChildSocket>,
    monitor: Option<BufReader<Stream>>,
    file: MemoryFile,
}

impl ReadBack {
    /// A channel to the monitor of a QEMU not started yet.
    pub fn new() -> Result<ReadBack> {
        Ok(ReadBack {
            socket: Some(ChildSocket::new().context("a socket for QEMU's monitor")?),
            monitor: None,
            file: MemoryFile::new("dissent-readback", &[])
                .context("cannot create a memory file to read the device's blob back into")?,
        })
    }

    /// QEMU's options for its monitor on the socket's child end.
    pub fn qemu_args(&self) -> Vec<String> {
        let fd = self.socket.as_ref().map_or(-1, ChildSocket::child_fd);
        vec![
            "-chardev".into(),
            format!("socket,id={MONITOR_ID},fd={fd}"),
            "-mon".into(),
            format!("chardev={MONITOR_ID},mode=control"),
        ]
    }

    /// Once QEMU is started: this process keeps its end only.
    pub fn started(&mut self) -> Result<()> {
        if let Some(socket) = self.socket.take() {
            let stream = socket.started().context("QEMU's monitor socket")?;
            self.monitor = Some(BufReader::new(stream));
        }
        Ok(())
    }

    /// The `len` bytes of the board's memory at `at`, as QEMU reads them now.
    pub async fn memory(&mut self, at: u64, len: usize) -> Result<Vec<u8>> {
        tokio::time::timeout(TIMEOUT, self.save(at, len))
            .await
            .map_err(|_| anyhow!("QEMU's monitor did not answer within {TIMEOUT:?}"))??;
        let bytes = self
            .file
            .contents()
            .context("reading back the device's memory")?;
        if bytes.len() != len {
            bail!("QEMU saved {} bytes of the {len} asked", bytes.len());
        }
        Ok(bytes)
    }

    async fn save(&mut self, at: u64, len: usize) -> Result<()> {
        self.command(serde_json::json!({ "execute": "qmp_capabilities" }))
            .await?;
        let path = self.file.path();
        self.command(serde_json::json!({
            "execute": "pmemsave",
            "arguments": { "val": at, "size": len, "filename": path.display().to_string() },
        }))
        .await?;
        Ok(())
    }

    /// Sends one QMP command and returns its `return`, passing over the greeting and
    /// events.
    async fn command(&mut self, command: serde_json::Value) -> Result<serde_json::Value> {
        let monitor = self
            .monitor
            .as_mut()
            .ok_or_else(|| anyhow!("QEMU's monitor is not connected"))?;
        let mut line = command.to_string();
        line.push('\n');
        monitor.get_mut().write_all(line.as_bytes()).await?;
        loop {
            let mut reply = String::new();
            if monitor.read_line(&mut reply).await? == 0 {
                bail!("QEMU's monitor closed");
            }
            let reply: serde_json::Value =
                serde_json::from_str(&reply).context("QEMU's monitor said something not JSON")?;
            if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = reply.get("error") {
                bail!(
                    "QEMU's monitor refused {}: {}",
                    command["execute"],
                    error["desc"].as_str().unwrap_or("no reason given")
                );
            }
        }
    }
}

/// The epoch a device trustee wrote into its DC-net blob: `written` is the blob the host
/// loaded, `read` the same bytes read back from the device. Only the session id and the
/// pseudonym keys may differ (what the setup image writes), both must be written, and the
/// blob must read as the trustee's; returns the session id and the keys in slot order.
pub fn completed_epoch(written: &[u8], read: &[u8]) -> Result<([u8; 16], Vec<Key>)> {
    let ours = Node::parse(written, NodeRole::Trustee)
        .map_err(|e| anyhow!("the blob written to the device: {e}"))?;
    let session_at = ours.session_id_offset();
    let session = session_at..session_at + ours.session_id.len();
    let keys_at = (ours.pseudonym_keys().as_ptr() as usize)
        .checked_sub(written.as_ptr() as usize)
        .ok_or_else(|| anyhow!("the pseudonym keys lie outside the blob"))?;
    let keys = keys_at..keys_at + ours.pseudonym_keys().len();
    if read.len() != written.len() {
        bail!(
            "{} bytes read back of a blob of {}",
            read.len(),
            written.len()
        );
    }
    if let Some(at) = (0..written.len())
        .find(|&i| written[i] != read[i] && !session.contains(&i) && !keys.contains(&i))
    {
        bail!(
            "the device's blob differs from the one written at byte {at}, outside the epoch's \
             session id and pseudonym keys"
        );
    }
    let theirs = Node::parse(read, NodeRole::Trustee)
        .map_err(|e| anyhow!("the device's blob does not read back: {e}"))?;
    if theirs.session_id == [0; 16] {
        bail!("the device wrote no epoch into its blob (its session id is zero)");
    }
    let slots: Vec<Key> = theirs
        .pseudonym_keys()
        .chunks_exact(32)
        .filter_map(|k| Key::try_from(k).ok())
        .collect();
    if slots.len() != usize::from(theirs.slots) || slots.contains(&[0; 32]) {
        bail!("the device wrote no pseudonym key for some slot");
    }
    Ok((theirs.session_id, slots))
}
