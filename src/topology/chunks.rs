//! Parsing a large file in pieces, so the TOML document tree is never held
//! for the whole file.
//!
//! toml's parser builds a tree of the whole document before it is
//! deserialized, about thirty times the size of the text (a 150 MiB
//! generated topology would need gigabytes). A large file is cut before
//! top-level `[process.NAME]` and `[[edge]]` headers into pieces of about
//! [`CHUNK_BYTES`]; each piece is parsed and deserialized on its own, its
//! spans moved to where it is in the file, and the pieces are merged.
//!
//! The pieces mean the same as the whole only if nothing in one refers to
//! another, so any doubt falls back to parsing the whole file (which also
//! gives the diagnostic of a wrong file, exactly as for a small one): a
//! piece that does not parse (a cut inside a multi-line string or array
//! makes its left part unterminated), a process defined in two pieces (a
//! duplicate, or `[process.a.ports.x]` away from `[process.a]`), an `edge`
//! or `[edge.x]` that is not in its `[[edge]]`'s piece (it deserializes as
//! a table, not a list), processes or edges before the first cut (an inline
//! `process = {…}` that a later header could not extend), or top-level keys
//! after it.

use std::collections::BTreeMap;

use super::{
    EdgeRare, EdgeSpec, EndpointList, PortSpec, ProcessRare, ProcessSpec, Spanned, TopologyFile,
    classify,
};

/// Files up to this size are parsed whole; larger ones in pieces of about
/// this size, whose document trees are a few MiB each.
pub(super) const CHUNK_BYTES: usize = 256 << 10;

/// The typed file, parsed piece by piece; `None` when the file is small or
/// the pieces cannot stand for the whole (see the module's comment).
pub(super) fn parse(source: &str, chunk_bytes: usize) -> Option<TopologyFile> {
    if source.len() <= chunk_bytes {
        return None;
    }
    let cuts = cuts(source, chunk_bytes);
    if cuts.len() < 2 {
        return None;
    }
    let mut pieces = cuts.windows(2).map(|w| (w[0], &source[w[0]..w[1]]));
    let (_, head) = pieces.next()?;
    let mut file = piece(head, 0)?;
    if !file.process.is_empty() || !file.edge.is_empty() {
        return None;
    }
    for (offset, text) in pieces {
        let part = piece(text, offset)?;
        if part.name.is_some() || part.exit_code_from.is_some() || !part.pipeline.is_empty() {
            return None;
        }
        for (name, spec) in part.process {
            if file.process.contains_key(&name) {
                return None;
            }
            file.process.insert(name, spec);
        }
        file.edge.extend(part.edge);
    }
    Some(file)
}

/// Where the pieces start: 0, the first `[process.NAME]` or `[[edge]]`
/// header, then the next such header at least `chunk_bytes` after the
/// previous cut, and so on; then the end of the file. The first piece is the
/// text before the first of those headers (it may be empty).
fn cuts(source: &str, chunk_bytes: usize) -> Vec<usize> {
    let mut cuts = vec![0];
    let mut at = 0;
    let mut next_from = 0;
    for line in source.split_inclusive('\n') {
        let is_split_header = line.starts_with("[[edge]]")
            || line
                .strip_prefix("[process.")
                .and_then(|rest| rest.split_once(']'))
                .is_some_and(|(name, _)| !name.is_empty() && !name.contains(['.', '"', '\'']));
        if is_split_header && at >= next_from {
            cuts.push(at);
            next_from = at + chunk_bytes;
        }
        at += line.len();
    }
    cuts.push(source.len());
    cuts
}

/// One piece, parsed and deserialized, its spans moved by `offset`.
fn piece(text: &str, offset: usize) -> Option<TopologyFile> {
    let mut file = classify::from_str::<TopologyFile>(text).ok()?;
    // Before the spans move: a scalar endpoint's span is found as `0..0`.
    file.fill_endpoint_spans();
    if offset > 0 {
        shift_file(&mut file, offset);
    }
    Some(file)
}

fn moved<T>(value: Spanned<T>, offset: usize) -> Spanned<T> {
    let span = value.span();
    Spanned::new(span.start + offset..span.end + offset, value.into_inner())
}

fn shift<T>(value: &mut Option<Spanned<T>>, offset: usize) {
    if let Some(inner) = value.take() {
        *value = Some(moved(inner, offset));
    }
}

fn shift_list<T>(list: &mut Vec<Spanned<T>>, offset: usize) {
    *list = std::mem::take(list)
        .into_iter()
        .map(|item| moved(item, offset))
        .collect();
}

pub(super) fn shift_file(file: &mut TopologyFile, offset: usize) {
    let TopologyFile {
        name,
        process,
        edge,
        pipeline,
        exit_code_from,
        include,
    } = file;
    shift(name, offset);
    shift_list(include, offset);
    shift_list(pipeline, offset);
    shift(exit_code_from, offset);
    *process = std::mem::take(process)
        .into_iter()
        .map(|(name, mut spec)| {
            shift_process(&mut spec, offset);
            (moved(name, offset), spec)
        })
        .collect();
    for edge in edge {
        shift_edge(edge, offset);
    }
}

fn shift_process(spec: &mut ProcessSpec, o: usize) {
    // Every field named, so a new one cannot be forgotten here.
    let ProcessSpec {
        cmd,
        shell,
        env,
        after,
        replicas,
        ports,
        rare,
    } = spec;
    shift(cmd, o);
    shift(shell, o);
    *env = std::mem::take(env)
        .into_iter()
        .map(|(key, value)| (moved(key, o), moved(value, o)))
        .collect::<BTreeMap<_, _>>();
    shift_list(after, o);
    shift(replicas, o);
    *ports = std::mem::take(ports)
        .into_iter()
        .map(|(name, PortSpec { mut fd })| {
            shift(&mut fd, o);
            (moved(name, o), PortSpec { fd })
        })
        .collect();
    let Some(rare) = rare else {
        return;
    };
    let ProcessRare {
        inherit_env,
        cwd,
        user,
        group,
        ready,
        ready_timeout,
        restart,
        restart_limit,
        restart_backoff,
        stop_signal,
        stop_timeout,
        forward_signals,
        env_file,
        profiles,
        restart_dependents,
        after_conditions,
        health,
        watchdog,
        host,
        cpus,
        memory,
    } = &mut **rare;
    shift_list(inherit_env, o);
    shift(cwd, o);
    shift(user, o);
    shift(group, o);
    shift(ready, o);
    shift(ready_timeout, o);
    shift(restart, o);
    shift(restart_limit, o);
    shift(restart_backoff, o);
    shift(stop_signal, o);
    shift(stop_timeout, o);
    shift_list(forward_signals, o);
    shift_list(env_file, o);
    shift_list(profiles, o);
    shift(restart_dependents, o);
    *after_conditions = std::mem::take(after_conditions)
        .into_iter()
        .map(|(name, condition)| (name, moved(condition, o)))
        .collect();
    shift(health, o);
    shift(watchdog, o);
    shift(host, o);
    shift(cpus, o);
    shift(memory, o);
}

fn shift_edge(edge: &mut EdgeSpec, o: usize) {
    let EdgeSpec {
        from,
        to,
        name,
        traffic,
        mechanism,
        rare,
    } = edge;
    for list in [from, to] {
        // A `to` left out (a bus edge) has no place in the text: its empty
        // span stays where the whole-file parse puts it.
        if list.span() == (0..0) {
            continue;
        }
        let mut whole = moved(
            std::mem::replace(list, Spanned::new(0..0, EndpointList::default())),
            o,
        );
        shift_list(&mut whole.get_mut().0, o);
        *list = whole;
    }
    shift(name, o);
    shift(traffic, o);
    shift(mechanism, o);
    let Some(rare) = rare else {
        return;
    };
    let EdgeRare {
        duplex,
        message_size,
        depth,
        size,
        in_flight,
        signal,
        protocol,
        socket,
        sync,
        initial,
        mode,
        address,
        allow_remote,
        deliver,
        endpoint,
        max_connections,
        probe,
    } = &mut **rare;
    shift(duplex, o);
    shift(message_size, o);
    shift(depth, o);
    shift(size, o);
    shift(in_flight, o);
    shift(signal, o);
    shift(protocol, o);
    shift(socket, o);
    shift(sync, o);
    shift(initial, o);
    shift(mode, o);
    shift(address, o);
    shift(allow_remote, o);
    shift(deliver, o);
    shift(endpoint, o);
    shift(max_connections, o);
    shift(probe, o);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces of a few hundred bytes, so small files are cut too.
    const SMALL: usize = 200;

    fn whole(text: &str) -> Option<TopologyFile> {
        let mut file = classify::from_str::<TopologyFile>(text).ok()?;
        file.fill_endpoint_spans();
        Some(file)
    }

    /// Every valid example and every file of the invalid corpus: the pieces
    /// give what the whole gives, spans included, or step aside.
    #[test]
    fn pieces_mean_the_whole_or_step_aside() {
        let mut cut = 0;
        for path in crate::topology::corpus_paths() {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Some(pieces) = parse(&text, SMALL) else {
                continue;
            };
            cut += 1;
            let expected = whole(&text).expect("pieces parse only if the whole does");
            assert_eq!(
                format!("{pieces:?}"),
                format!("{expected:?}"),
                "{}",
                path.display()
            );
        }
        assert!(cut > 10, "only {cut} files were cut into pieces");
    }

    /// What a piece cannot see makes the whole file be parsed.
    #[test]
    fn references_across_pieces_fall_back_to_the_whole_file() {
        let filler = "[process.f]\ncmd = [\"x\"]\n";
        let pad = format!("# {}\n", "-".repeat(SMALL));
        let cases = [
            // A duplicate process, one in each piece.
            format!("{filler}{pad}[process.a]\ncmd = [\"x\"]\n{pad}[process.a]\ncmd = [\"y\"]\n"),
            // A port table away from its process.
            format!(
                "[process.a]\ncmd = [\"x\"]\n{pad}[process.b]\n{pad}[process.a.ports.p]\nfd = 3\n"
            ),
            // An edge subtable away from its `[[edge]]`.
            format!("[[edge]]\nfrom = \"a\"\nto = \"b\"\n{pad}[process.b]\n[edge.x]\n"),
            // A multi-line string with a header-like line in it.
            format!("[process.a]\nshell = \"\"\"\n{pad}[process.b]\n\"\"\"\n{pad}[process.c]\n"),
            // An inline process table that a later header cannot extend.
            format!("process = {{ a = {{ cmd = [\"x\"] }} }}\n{pad}[process.b]\n"),
        ];
        for text in cases {
            assert!(parse(&text, SMALL).is_none(), "{text}");
        }
    }
}
