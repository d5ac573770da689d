//! Frames and their bounds.
//!
//! ```text
//! frame: u32 length (big-endian) | u64 call id (big-endian) | u8 kind tag | body (length - 9 bytes)
//! ```
//!
//! The tag is the request's [`RequestKind`] (a reply carries its request's tag, the hello
//! [`HELLO_TAG`]), so a receiver knows before it reads a byte of the body how large a frame of
//! that kind may be, and whether its sender may send it at all. A frame longer than its kind's
//! bound closes the connection; a body is read into a buffer that grows as its bytes arrive,
//! never one sized from the header, so a length that lies costs nothing until the bytes come.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::wire::RequestKind;

/// The first bytes of every connection of this protocol, inside TLS.
pub const PREAMBLE: &[u8; 16] = b"BOXOFFICE-RPC/2\n";
/// The first bytes of the retired plaintext protocol: refused with a reason.
pub const PREAMBLE_V1: &[u8; 16] = b"BOXOFFICE-RPC/1\n";
/// The call id of the hello (the cluster secret), and of the server's refusal of it.
pub(super) const HELLO_ID: u64 = 0;
pub(super) const HELLO_TAG: u8 = 0xff;
/// The hello's body: the cluster secret.
pub(super) const HELLO_BYTES_MAX: usize = 4 * 1024;
/// The id and tag that the length covers besides the body.
const ID_TAG_BYTES: usize = 9;

/// What a request's encoding adds to its payload (enum tags, ids, lengths, a vote).
const ENVELOPE_BYTES: usize = 64 * 1024;
/// Requests and replies that carry a few ids and numbers.
const SMALL_BYTES_MAX: usize = 64 * 1024;
/// Member lists: `NODES_MAX` (1,000) addresses of at most a few hundred bytes each.
const MEMBERS_BYTES_MAX: usize = 1 << 20;
/// A snapshot's, a backup's or a restore's chunk.
const CHUNK_BYTES_MAX: usize = raft_store::SNAPSHOT_CHUNK_BYTES_MAX + ENVELOPE_BYTES;
/// The largest body of a request of a kind this node does not know (a newer peer's): read past
/// and refused, so that nodes one version apart stay connected.
pub(super) const UNKNOWN_KIND_BYTES_MAX: usize = MEMBERS_BYTES_MAX;
/// One proposal: the largest command the model admits is a venue of 100 sections of 500 rows
/// with 100-byte labels (about 6 MB); the api's default body limit is 1 MiB.
const PROPOSAL_BYTES_MAX: usize = 16 << 20;
/// One append: up to openraft's 300 entries of up to 512 proposals each. Only nodes send it, and a
/// node's certificate already lets its holder write any entry: this bounds mistakes, the per-role
/// limits bound everyone else.
const APPEND_BYTES_MAX: usize = 256 << 20;
/// Read answers and change pages: a seat map of 200,000 seats, a page of 1,000 changes.
const ANSWER_BYTES_MAX: usize = 64 << 20;
/// Replies with an outcome, the layout or a node's status.
const OUTCOME_BYTES_MAX: usize = 16 << 20;
/// The largest frame of any kind: an append.
pub(super) const FRAME_BYTES_MAX: usize = APPEND_BYTES_MAX;
/// How much of a body is read at a time, and the most a body's buffer holds before its bytes.
const READ_STEP_BYTES: usize = 64 * 1024;

/// The largest body of a request of `kind`.
pub(super) fn request_bytes_max(kind: RequestKind) -> usize {
    use RequestKind as K;
    match kind {
        K::RaftAppend => APPEND_BYTES_MAX,
        K::RaftSnapshot | K::RestoreChunk => CHUNK_BYTES_MAX,
        K::Propose => PROPOSAL_BYTES_MAX,
        K::InitCluster | K::InitGroup | K::EnsureMembers => MEMBERS_BYTES_MAX,
        K::RaftVote
        | K::Read
        | K::Changes
        | K::Routing
        | K::Status
        | K::Join
        | K::OpenGroup
        | K::Campaign
        | K::DropGroup
        | K::BackupOpen
        | K::BackupNext
        | K::TransferLeader
        | K::Info => SMALL_BYTES_MAX,
    }
}

/// The largest body of the reply to a request of `kind`: the client closes a connection that
/// sends more.
pub(super) fn reply_bytes_max(kind: RequestKind) -> usize {
    use RequestKind as K;
    match kind {
        K::Read | K::Changes => ANSWER_BYTES_MAX,
        K::Propose | K::Routing | K::Status | K::InitCluster => OUTCOME_BYTES_MAX,
        K::BackupNext => CHUNK_BYTES_MAX,
        // Raft's answers, errors and `Done`: an error may carry a member list.
        K::RaftAppend
        | K::RaftVote
        | K::RaftSnapshot
        | K::Join
        | K::InitGroup
        | K::OpenGroup
        | K::Campaign
        | K::EnsureMembers
        | K::DropGroup
        | K::BackupOpen
        | K::RestoreChunk
        | K::TransferLeader
        | K::Info => MEMBERS_BYTES_MAX,
    }
}

/// A frame this protocol cannot carry, or a length no peer of it sends.
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    #[error("frame of {body_bytes} bytes is too large to send")]
    TooLarge { body_bytes: usize },
    #[error("bad frame length {len_bytes}")]
    BadLength { len_bytes: usize },
}

/// A frame's header, read before its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub id: u64,
    pub tag: u8,
    pub body_bytes: usize,
}

pub(super) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    id: u64,
    tag: u8,
    body: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(body.len() + ID_TAG_BYTES)
        .ok()
        .filter(|len| *len as usize <= FRAME_BYTES_MAX + ID_TAG_BYTES)
        .ok_or_else(|| std::io::Error::other(FrameError::TooLarge { body_bytes: body.len() }))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&id.to_be_bytes()).await?;
    w.write_all(&[tag]).await?;
    w.write_all(body).await
}

pub(super) async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Header> {
    let len = r.read_u32().await? as usize;
    let Some(body_bytes) = len.checked_sub(ID_TAG_BYTES) else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, FrameError::BadLength { len_bytes: len }));
    };
    let id = r.read_u64().await?;
    let tag = r.read_u8().await?;
    Ok(Header { id, tag, body_bytes })
}

/// Reads a body of `bytes`, its buffer growing as the bytes arrive.
pub(super) async fn read_body<R: AsyncRead + Unpin>(r: &mut R, bytes: usize) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(bytes.min(READ_STEP_BYTES));
    let read = r.take(bytes as u64).read_to_end(&mut body).await?;
    if read < bytes {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(body)
}

/// Reads a body of `bytes` and forgets it, holding at most one read step of it at a time.
pub(super) async fn skip_body<R: AsyncRead + Unpin>(r: &mut R, bytes: usize) -> std::io::Result<()> {
    let skipped = tokio::io::copy(&mut r.take(bytes as u64), &mut tokio::io::sink()).await?;
    if (skipped as usize) < bytes {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_reads_back_as_written() {
        let mut wire = Vec::new();
        write_frame(&mut wire, 42, RequestKind::Read.tag(), b"hello").await.unwrap();
        let mut r = wire.as_slice();
        let header = read_header(&mut r).await.unwrap();
        assert_eq!(header, Header { id: 42, tag: RequestKind::Read.tag(), body_bytes: 5 });
        assert_eq!(read_body(&mut r, header.body_bytes).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_header_says_fails_and_a_length_below_the_header_is_refused() {
        let mut r: &[u8] = &[0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 1, 3, b'x'];
        let header = read_header(&mut r).await.unwrap();
        assert_eq!(header.body_bytes, 11);
        assert!(read_body(&mut r, header.body_bytes).await.is_err());
        let mut r: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0];
        assert!(read_header(&mut r).await.is_err());
    }

    #[test]
    fn every_kind_is_bounded_within_the_largest_frame() {
        for kind in RequestKind::ALL {
            assert!(request_bytes_max(kind) <= FRAME_BYTES_MAX, "{kind}");
            assert!(reply_bytes_max(kind) <= FRAME_BYTES_MAX, "{kind}");
        }
        assert!(request_bytes_max(RequestKind::RaftSnapshot) > raft_store::SNAPSHOT_CHUNK_BYTES_MAX);
        assert!(reply_bytes_max(RequestKind::BackupNext) > raft_store::SNAPSHOT_CHUNK_BYTES_MAX);
        assert!(request_bytes_max(RequestKind::DropGroup) <= SMALL_BYTES_MAX);
    }
}
