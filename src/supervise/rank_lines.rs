//! Each rank's lines, put together again from mpirun's tagged output.
//!
//! With `--tag-output`, Open MPI (4.1) tags each *fragment* it forwards,
//! not each line: what a rank wrote with one `write(2)` comes out as
//! `[JOB,RANK]<stdout>:` followed by the bytes, and a tag again after every
//! newline within them. A line the rank wrote in two writes (stdio flushes
//! its buffer mid-line) therefore comes out with a second tag in the middle,
//! and another rank's fragment may come between the two halves:
//!
//! ```text
//! [1,0]<stdout>:line 44[1,2]<stdout>:rank 2 says hello
//! [1,0]<stdout>:6 of 5000
//! ```
//!
//! [`Demux`] reads mpirun's lines (the records of its stream) and splits
//! them at every tag; each piece goes to its rank's line, and the line of
//! the last piece ends where mpirun's line ends. What it hands out are
//! the ranks' own lines, whole, each with the tag of its first piece (the
//! log files keep it), and mpirun's own untagged lines. A rank's line is
//! cut into pieces of [`CHUNK`] bytes as a long line of any process is. A
//! rank that writes text that looks like a tag (`[1,0]<stdout>:`) is taken
//! at its word.

use super::logs::{CHUNK, Record};

/// A line (or the piece of a long one) of a rank or of mpirun itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The rank, or `None` for mpirun's own text.
    pub rank: Option<usize>,
    /// The bytes, without tag or newline.
    pub line: &'a [u8],
    /// The tag the line came with (empty for mpirun's own).
    pub tag: &'a [u8],
    /// It starts a line (else it continues one cut at [`CHUNK`]).
    pub starts_line: bool,
    /// It ends its line (else more of it follows).
    pub ends_line: bool,
}

/// One rank's line being put together: its tag, then its bytes.
#[derive(Debug, Default)]
struct Partial {
    buf: Vec<u8>,
    tag: usize,
    continuing: bool,
}

/// The lines of the ranks of one of mpirun's streams.
#[derive(Debug, Default)]
pub struct Demux {
    /// By rank.
    partial: Vec<Partial>,
    /// The rank of the last piece of the record before, which a record
    /// that continues mpirun's line (cut at [`CHUNK`]) goes on with.
    last: Option<usize>,
}

impl Demux {
    /// A demultiplexer for a world of `ranks` ranks.
    pub fn new(ranks: usize) -> Demux {
        Demux {
            partial: (0..ranks).map(|_| Partial::default()).collect(),
            last: None,
        }
    }

    /// Reads one record of mpirun's stream and hands out every line it
    /// completes (and mpirun's own text).
    pub fn push(&mut self, record: Record<'_>, emit: &mut impl FnMut(Piece<'_>)) {
        let ends = record.bytes.len() < CHUNK;
        let mut current = if record.starts_line { None } else { self.last };
        let mut rest = record.bytes;
        let mut own_start = record.starts_line;
        loop {
            let next = next_tag(rest, self.partial.len());
            let (data, after) = match next {
                Some((at, _, _)) => (&rest[..at], Some(at)),
                None => (rest, None),
            };
            let last_piece = after.is_none();
            match current {
                Some(rank) => self.append(rank, data, emit),
                None if !data.is_empty() || (last_piece && own_start) => {
                    emit(Piece {
                        rank: None,
                        line: data,
                        tag: b"",
                        starts_line: own_start,
                        ends_line: last_piece && ends,
                    });
                    own_start = false;
                }
                None => {}
            }
            let Some((at, rank, len)) = next else {
                break;
            };
            let partial = &mut self.partial[rank];
            if partial.buf.is_empty() {
                partial.buf.extend_from_slice(&rest[at..at + len]);
                partial.tag = len;
            }
            current = Some(rank);
            rest = &rest[at + len..];
        }
        if ends && let Some(rank) = current {
            self.complete(rank, emit);
        }
        self.last = current;
    }

    /// At the end of mpirun's stream: every line left open ends.
    pub fn finish(&mut self, emit: &mut impl FnMut(Piece<'_>)) {
        for rank in 0..self.partial.len() {
            if !self.partial[rank].buf.is_empty() || self.partial[rank].continuing {
                self.complete(rank, emit);
            }
        }
        self.last = None;
    }

    /// Adds `data` to `rank`'s line; hands out a piece of [`CHUNK`] bytes
    /// when the line grows that long.
    fn append(&mut self, rank: usize, data: &[u8], emit: &mut impl FnMut(Piece<'_>)) {
        let partial = &mut self.partial[rank];
        partial.buf.extend_from_slice(data);
        while partial.buf.len() - partial.tag >= CHUNK {
            let tag = partial.tag;
            emit(Piece {
                rank: Some(rank),
                line: &partial.buf[tag..tag + CHUNK],
                tag: &partial.buf[..tag],
                starts_line: !partial.continuing,
                ends_line: false,
            });
            partial.buf.drain(tag..tag + CHUNK);
            partial.continuing = true;
        }
    }

    /// `rank`'s line ends here.
    fn complete(&mut self, rank: usize, emit: &mut impl FnMut(Piece<'_>)) {
        let partial = &mut self.partial[rank];
        let tag = partial.tag;
        emit(Piece {
            rank: Some(rank),
            line: &partial.buf[tag.min(partial.buf.len())..],
            tag: &partial.buf[..tag.min(partial.buf.len())],
            starts_line: !partial.continuing,
            ends_line: true,
        });
        partial.buf.clear();
        partial.tag = 0;
        partial.continuing = false;
    }
}

/// The first tag in `bytes` of a rank below `ranks`: its offset, its rank
/// and its length.
fn next_tag(bytes: &[u8], ranks: usize) -> Option<(usize, usize, usize)> {
    let mut from = 0;
    while let Some(offset) = memchr::memchr(b'[', &bytes[from..]) {
        let at = from + offset;
        if let Some((rank, rest)) = crate::mechanism::mpi::parse_tag(&bytes[at..])
            && rank < ranks
        {
            return Some((at, rank, bytes.len() - at - rest.len()));
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(records: &[&[u8]], ranks: usize) -> Vec<(Option<usize>, String, String, bool)> {
        let mut demux = Demux::new(ranks);
        let mut out = Vec::new();
        let mut emit = |p: Piece<'_>| {
            out.push((
                p.rank,
                String::from_utf8_lossy(p.line).into_owned(),
                String::from_utf8_lossy(p.tag).into_owned(),
                p.ends_line,
            ))
        };
        for record in records {
            demux.push(
                Record {
                    bytes: record,
                    starts_line: true,
                },
                &mut emit,
            );
        }
        demux.finish(&mut emit);
        out
    }

    #[test]
    fn a_line_cut_by_another_ranks_fragment_comes_out_whole() {
        let got = lines(
            &[
                b"[1,0]<stdout>:line 44[1,2]<stdout>:rank 2 says hello",
                b"[1,0]<stdout>:6 of 5000",
                b"mpirun's own",
            ],
            4,
        );
        let t0 = "[1,0]<stdout>:".to_owned();
        let t2 = "[1,2]<stdout>:".to_owned();
        assert_eq!(
            got,
            [
                (Some(2), "rank 2 says hello".into(), t2, true),
                (Some(0), "line 446 of 5000".into(), t0, true),
                (None, "mpirun's own".into(), String::new(), true),
            ]
        );
    }

    #[test]
    fn a_second_tag_of_the_same_rank_mid_line_is_dropped() {
        let got = lines(
            &[b"[1,1]<stdout>:li[1,1]<stdout>:ne 489", b"[1,1]<stdout>:"],
            2,
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, "line 489");
        assert_eq!(got[1].1, "");
        // A rank beyond the world's is text, not a tag.
        let got = lines(&[b"[1,0]<stdout>:a [1,7]<stdout>:b"], 2);
        assert_eq!(got[0].1, "a [1,7]<stdout>:b");
    }

    #[test]
    fn an_open_line_ends_at_the_end_of_the_stream() {
        let got = lines(&[b"[1,0]<stdout>:half[1,1]<stdout>:other"], 2);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[0].1.as_str()), (Some(1), "other"));
        assert_eq!(
            (got[1].0, got[1].1.as_str(), got[1].3),
            (Some(0), "half", true)
        );
    }
}
