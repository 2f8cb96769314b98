//! Start and stop order as the event loop needs them: what to look at when
//! something changed, so that no event costs a pass over every instance.
//! Pure.
//!
//! The start graph has an edge `d -> i` when `i` waits for `d`: `d` is in
//! `i`'s `after`, or `d` receives a signal `i` sends (a sender is handed its
//! receivers' pids). [`StartQueue`] keeps the pending instances to look at
//! again, ordered by their place in the start order, and adds an
//! instance's dependents when it becomes ready or finished.
//! [`StopLevels`] stops the same graph backwards: an instance is stopped
//! once every dependent of it is finished, everything without a running
//! dependent at once.

use std::collections::{BTreeSet, VecDeque};

/// The start graph, both ways, by instance index.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    /// For each instance, those that wait for it (its dependents).
    dependents: Vec<Vec<usize>>,
    /// For each instance, those it waits for.
    prerequisites: Vec<Vec<usize>>,
}

impl Graph {
    /// The graph of `count` instances where instance `i` waits for each of
    /// `waits_for(i)`.
    pub fn new(count: usize, waits_for: impl Fn(usize) -> Vec<usize>) -> Graph {
        let mut graph = Graph {
            dependents: vec![Vec::new(); count],
            prerequisites: vec![Vec::new(); count],
        };
        for i in 0..count {
            for d in waits_for(i) {
                if d != i && d < count && !graph.prerequisites[i].contains(&d) {
                    graph.prerequisites[i].push(d);
                    graph.dependents[d].push(i);
                }
            }
        }
        graph
    }

    /// Those that wait for `i`.
    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }
}

/// The pending instances to look at again, earliest in start order first.
#[derive(Debug, Default)]
pub(crate) struct StartQueue {
    /// The start order, as instance indices.
    sequence: Vec<usize>,
    /// Each instance's place in `sequence` (`usize::MAX` when absent).
    place: Vec<usize>,
    /// Places in `sequence` to look at.
    candidates: BTreeSet<usize>,
}

impl StartQueue {
    /// Every instance of `sequence` (the start order) is a candidate.
    pub fn new(count: usize, sequence: Vec<usize>) -> StartQueue {
        let mut place = vec![usize::MAX; count];
        for (k, &i) in sequence.iter().enumerate() {
            place[i] = k;
        }
        let candidates = (0..sequence.len()).collect();
        StartQueue {
            sequence,
            place,
            candidates,
        }
    }

    /// `i` became ready or finished: its dependents are looked at again.
    pub fn changed(&mut self, graph: &Graph, i: usize) {
        for &dependent in graph.dependents(i) {
            if let Some(&k) = self.place.get(dependent).filter(|&&k| k != usize::MAX) {
                self.candidates.insert(k);
            }
        }
    }

    /// `i` itself is to be looked at again (restarted on request).
    pub fn push(&mut self, i: usize) {
        if let Some(&k) = self.place.get(i).filter(|&&k| k != usize::MAX) {
            self.candidates.insert(k);
        }
    }

    /// The next instance to look at, earliest in start order first.
    pub fn pop(&mut self) -> Option<usize> {
        self.candidates.pop_first().map(|k| self.sequence[k])
    }
}

/// Shutdown by level: who may be stopped now.
#[derive(Debug, Default)]
pub(crate) struct StopLevels {
    /// For each instance, how many of its dependents are not finished.
    waiting_on: Vec<usize>,
    /// Instances finished (or counted as such) since the shutdown began.
    done: Vec<bool>,
    /// Instances whose turn came, in the order it came.
    released: VecDeque<usize>,
}

impl StopLevels {
    /// The levels when the shutdown begins: everything not finished whose
    /// dependents are all finished is released at once, in `stop_order`.
    pub fn new(graph: &Graph, stop_order: &[usize], finished: impl Fn(usize) -> bool) -> Self {
        let count = graph.dependents.len();
        let done: Vec<bool> = (0..count).map(&finished).collect();
        let waiting_on = (0..count)
            .map(|i| graph.dependents[i].iter().filter(|&&d| !done[d]).count())
            .collect::<Vec<_>>();
        let released = stop_order
            .iter()
            .copied()
            .filter(|&i| !done[i] && waiting_on[i] == 0)
            .collect();
        StopLevels {
            waiting_on,
            done,
            released,
        }
    }

    /// `i` is finished: those it waited for lose one dependent to wait on,
    /// and are released when none is left.
    pub fn finished(&mut self, graph: &Graph, i: usize) {
        if std::mem::replace(&mut self.done[i], true) {
            return;
        }
        for &p in &graph.prerequisites[i] {
            self.waiting_on[p] -= 1;
            if self.waiting_on[p] == 0 && !self.done[p] {
                self.released.push_back(p);
            }
        }
    }

    /// The next instance whose turn to be stopped has come.
    pub fn next(&mut self) -> Option<usize> {
        self.released.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 <- 1 <- 2 (2 waits for 1, 1 for 0), and 3 alone; 4 waits for 0 and 3.
    fn graph() -> Graph {
        let waits: Vec<Vec<usize>> = vec![vec![], vec![0], vec![1, 1], vec![], vec![0, 3]];
        Graph::new(5, |i| waits[i].clone())
    }

    fn drain(levels: &mut StopLevels) -> Vec<usize> {
        std::iter::from_fn(|| levels.next()).collect()
    }

    #[test]
    fn candidates_come_in_start_order_and_only_when_something_changed() {
        let graph = graph();
        let mut queue = StartQueue::new(5, vec![0, 3, 1, 4, 2]);
        let first: Vec<usize> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(first, vec![0, 3, 1, 4, 2]);
        assert_eq!(queue.pop(), None, "nothing changed");
        queue.changed(&graph, 0);
        queue.changed(&graph, 0);
        assert_eq!(queue.pop(), Some(1));
        assert_eq!(queue.pop(), Some(4));
        assert_eq!(queue.pop(), None);
        queue.changed(&graph, 2);
        assert_eq!(queue.pop(), None, "nothing waits for 2");
    }

    #[test]
    fn duplicate_and_self_edges_count_once() {
        let graph = Graph::new(2, |i| if i == 1 { vec![0, 0, 1] } else { vec![0] });
        assert_eq!(graph.dependents(0), &[1]);
        assert!(graph.dependents(1).is_empty());
    }

    #[test]
    fn independent_instances_are_released_together_and_dependents_first() {
        let graph = graph();
        let stop_order = [2, 4, 1, 3, 0];
        let mut levels = StopLevels::new(&graph, &stop_order, |_| false);
        // 2 and 4 have no dependents; 3 waits for 4, 1 for 2, 0 for 1 and 4.
        assert_eq!(drain(&mut levels), vec![2, 4]);
        levels.finished(&graph, 4);
        assert_eq!(drain(&mut levels), vec![3]);
        levels.finished(&graph, 4);
        assert_eq!(drain(&mut levels), Vec::<usize>::new(), "counted once");
        levels.finished(&graph, 2);
        assert_eq!(drain(&mut levels), vec![1]);
        levels.finished(&graph, 3);
        levels.finished(&graph, 1);
        assert_eq!(drain(&mut levels), vec![0]);
    }

    #[test]
    fn instances_finished_before_the_shutdown_are_not_waited_on() {
        let graph = graph();
        let stop_order = [2, 4, 1, 3, 0];
        let mut levels = StopLevels::new(&graph, &stop_order, |i| i == 2 || i == 4);
        assert_eq!(drain(&mut levels), vec![1, 3]);
        levels.finished(&graph, 1);
        assert_eq!(drain(&mut levels), vec![0]);
    }
}
