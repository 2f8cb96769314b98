//! Writes a synthetic topology of N processes with about two edges each, for
//! the planning benchmark (`bench/plan/run.sh`).
//!
//! ```text
//! cargo run --release --example gen_topology -- 10000 > /tmp/t10k.toml
//! ```
//!
//! Processes come in blocks of ten, `p0`..`p9`, `p10`..`p19` and so on. Each
//! block has:
//!
//! - a chain of stream edges `p0 -> p1 -> … -> p9` over stdout/stdin
//!   (anonymous pipes), 9 edges;
//! - one `messages` edge per process, `pI.tx -> pJ.rx` with J five places on
//!   within the block (seqpacket socketpairs), 10 edges;
//! - one `request` edge whose nine clients `pI.api` share the block's first
//!   process as server (a Unix stream listener), 1 edge.
//!
//! That is 20 edges per ten processes, and the messages edges close
//! two-process data cycles, so cycle analysis has work to do too. The output
//! is deterministic (the same N gives the same bytes) and compact: 100 000
//! processes stay under the 16 MiB a topology file may have by default;
//! 1 000 000 (about 160 MiB) are checked with `--max-file-size 1GiB
//! --max-processes 1000000` (`bench/plan/million.sh`).

use std::io::{self, BufWriter, Write};

const BLOCK: usize = 10;

fn main() -> io::Result<()> {
    let count: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(n)) if n >= BLOCK && n % BLOCK == 0 => n,
        _ => {
            eprintln!("usage: gen_topology N   (N a multiple of {BLOCK})");
            std::process::exit(2);
        }
    };
    let mut out = BufWriter::new(io::stdout().lock());
    writeln!(out, "name = \"bench-{count}\"\n")?;
    for i in 0..count {
        writeln!(out, "[process.p{i}]\ncmd = [\"worker\"]")?;
    }
    for block in (0..count).step_by(BLOCK) {
        for i in block..block + BLOCK - 1 {
            writeln!(out, "[[edge]]\nfrom = \"p{i}\"\nto = \"p{}\"", i + 1)?;
        }
        for i in block..block + BLOCK {
            let peer = block + (i - block + BLOCK / 2) % BLOCK;
            writeln!(
                out,
                "[[edge]]\nfrom = \"p{i}.tx\"\nto = \"p{peer}.rx\"\ntraffic = \"messages\""
            )?;
        }
        let clients: Vec<String> = (block + 1..block + BLOCK)
            .map(|i| format!("\"p{i}.api\""))
            .collect();
        writeln!(
            out,
            "[[edge]]\nfrom = [{}]\nto = \"p{block}.api\"\ntraffic = \"request\"",
            clients.join(", ")
        )?;
    }
    out.flush()
}
