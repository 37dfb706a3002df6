//! Per-partition watermarks for at-least-once delivery: which input offset may be
//! committed, given which outputs have been acknowledged.
//!
//! Every consumed record is registered with the number of outputs it produced (a drop
//! produces none and is done at once). The watermark of a partition is the offset of
//! its first record that still has an unacknowledged output, or one past the last
//! registered record when there is none: every record before it is done, so it is the
//! offset to commit. A failed delivery leaves its record undone, so the watermark stays
//! behind it until a retry is acknowledged; it is never skipped.
//!
//! A partition gets a fresh epoch each time it is (re)assigned; acknowledgements that
//! carry an older epoch belong to an assignment that is gone and are ignored. Pure data,
//! no Kafka: the sink's delivery callback and the consumer loop share it under a lock.

use std::collections::{HashMap, VecDeque};

/// A partition of one of the configured input topics (by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tp {
    pub topic: u16,
    pub partition: i32,
}

#[derive(Debug)]
struct Part {
    epoch: u32,
    /// Records with outputs not yet all acknowledged, in offset order.
    pending: VecDeque<Pending>,
    /// One past the highest registered offset.
    next: i64,
    /// The last watermark handed out for storing (-1: none).
    stored: i64,
    /// Outputs handed to the producer with no delivery report yet.
    in_flight: u32,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    offset: i64,
    outstanding: u32,
}

impl Part {
    fn watermark(&self) -> i64 {
        self.pending.front().map_or(self.next, |p| p.offset.min(self.next))
    }
}

/// What an acknowledgement meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// It counted for a partition still assigned.
    Counted,
    /// Its partition was revoked (or reassigned) since; nothing to do.
    Stale,
}

/// The watermarks of every assigned partition.
#[derive(Debug, Default)]
pub struct Watermarks {
    /// Looked up twice per output (register and acknowledge): hashed with foldhash,
    /// not SipHash (the keys come from the broker's assignment, not from events).
    parts: HashMap<Tp, Part, foldhash::fast::RandomState>,
    next_epoch: u32,
    /// Outputs registered and not yet acknowledged, over all partitions.
    outstanding: usize,
}

impl Watermarks {
    pub fn new() -> Watermarks {
        Watermarks::default()
    }

    /// Registers a consumed record that produced `outputs` outputs, all about to be
    /// handed to the producer; returns the partition's epoch for their tickets.
    pub fn register(&mut self, tp: Tp, offset: i64, outputs: u32) -> u32 {
        let epoch = &mut self.next_epoch;
        let part = self.parts.entry(tp).or_insert_with(|| {
            *epoch = epoch.wrapping_add(1);
            Part { epoch: *epoch, pending: VecDeque::new(), next: offset, stored: -1, in_flight: 0 }
        });
        if outputs > 0 {
            // Offsets arrive in order; tolerate a repeat or a step back (a reset) by
            // keeping the queue sorted, and never move `next` backwards.
            match part.pending.back() {
                Some(last) if last.offset >= offset => match part.pending.binary_search_by_key(&offset, |p| p.offset) {
                    Ok(i) => part.pending[i].outstanding += outputs,
                    Err(i) => part.pending.insert(i, Pending { offset, outstanding: outputs }),
                },
                _ => part.pending.push_back(Pending { offset, outstanding: outputs }),
            }
            part.in_flight += outputs;
            self.outstanding += outputs as usize;
        }
        part.next = part.next.max(offset + 1);
        part.epoch
    }

    /// An output that was registered could not be handed to the producer (its queue is
    /// full); it is held and will be [`resent`](Self::resent).
    pub fn unsent(&mut self, tp: Tp, epoch: u32) {
        if let Some(part) = self.current(tp, epoch) {
            part.in_flight -= 1;
        }
    }

    /// A held or failed output is handed to the producer again. False if its
    /// partition is gone: drop it (the new owner consumes the record again).
    pub fn resent(&mut self, tp: Tp, epoch: u32) -> bool {
        match self.current(tp, epoch) {
            Some(part) => {
                part.in_flight += 1;
                true
            }
            None => false,
        }
    }

    /// The producer acknowledged one output of the record at `offset`.
    pub fn acked(&mut self, tp: Tp, epoch: u32, offset: i64) -> Ack {
        let Some(part) = self.current(tp, epoch) else { return Ack::Stale };
        part.in_flight -= 1;
        // Acknowledgements come mostly in order: the oldest record first.
        let found = match part.pending.front() {
            Some(p) if p.offset == offset => Ok(0),
            _ => part.pending.binary_search_by_key(&offset, |p| p.offset),
        };
        if let Ok(i) = found {
            part.pending[i].outstanding -= 1;
            while part.pending.front().is_some_and(|p| p.outstanding == 0) {
                part.pending.pop_front();
            }
            self.outstanding -= 1;
        }
        Ack::Counted
    }

    /// The producer gave up on one output: it stays outstanding (the watermark waits)
    /// until a retry is acknowledged.
    pub fn failed(&mut self, tp: Tp, epoch: u32) -> Ack {
        match self.current(tp, epoch) {
            Some(part) => {
                part.in_flight -= 1;
                Ack::Counted
            }
            None => Ack::Stale,
        }
    }

    fn current(&mut self, tp: Tp, epoch: u32) -> Option<&mut Part> {
        self.parts.get_mut(&tp).filter(|p| p.epoch == epoch)
    }

    pub fn is_current(&self, tp: Tp, epoch: u32) -> bool {
        self.parts.get(&tp).is_some_and(|p| p.epoch == epoch)
    }

    /// The offset to commit for a partition: every record before it is done.
    pub fn watermark(&self, tp: Tp) -> Option<i64> {
        self.parts.get(&tp).map(Part::watermark)
    }

    /// Appends each partition whose watermark moved since the last call.
    pub fn advanced(&mut self, out: &mut Vec<(Tp, i64)>) {
        for (tp, part) in &mut self.parts {
            let w = part.watermark();
            if w > part.stored {
                part.stored = w;
                out.push((*tp, w));
            }
        }
    }

    /// Outputs of these partitions still with the producer (no report yet).
    pub fn in_flight<'a>(&self, tps: impl IntoIterator<Item = &'a Tp>) -> u32 {
        tps.into_iter().filter_map(|tp| self.parts.get(tp)).map(|p| p.in_flight).sum()
    }

    /// Forgets a revoked partition; returns its final watermark. Its outputs still
    /// unacknowledged no longer count: the partition's next owner starts from the
    /// committed watermark and produces them again.
    pub fn remove(&mut self, tp: Tp) -> Option<i64> {
        let part = self.parts.remove(&tp)?;
        self.outstanding -= part.pending.iter().map(|p| p.outstanding as usize).sum::<usize>();
        Some(part.watermark())
    }

    pub fn partitions(&self) -> impl Iterator<Item = Tp> + '_ {
        self.parts.keys().copied()
    }

    /// Outputs registered and not yet acknowledged, over all partitions.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Tp = Tp { topic: 0, partition: 3 };

    #[test]
    fn drops_are_done_at_once() {
        let mut w = Watermarks::new();
        w.register(P, 10, 0);
        w.register(P, 11, 0);
        assert_eq!(w.watermark(P), Some(12));
        assert_eq!(w.outstanding(), 0);
    }

    #[test]
    fn the_watermark_waits_for_every_earlier_output() {
        let mut w = Watermarks::new();
        let e = w.register(P, 0, 2);
        w.register(P, 1, 0); // dropped, but after an undone record
        w.register(P, 2, 1);
        assert_eq!(w.watermark(P), Some(0));
        // The later record is acknowledged first: nothing moves.
        assert_eq!(w.acked(P, e, 2), Ack::Counted);
        assert_eq!(w.watermark(P), Some(0));
        w.acked(P, e, 0);
        assert_eq!(w.watermark(P), Some(0), "one output of offset 0 is still out");
        w.acked(P, e, 0);
        assert_eq!(w.watermark(P), Some(3));
        assert_eq!(w.outstanding(), 0);
    }

    #[test]
    fn a_failed_delivery_blocks_the_watermark_until_its_retry_is_acknowledged() {
        let mut w = Watermarks::new();
        let e = w.register(P, 5, 1);
        w.register(P, 6, 1);
        w.acked(P, e, 6);
        assert_eq!(w.failed(P, e), Ack::Counted);
        assert_eq!(w.watermark(P), Some(5));
        assert_eq!(w.in_flight([&P]), 0, "nothing is with the producer while the retry waits");
        assert_eq!(w.outstanding(), 1);
        assert!(w.resent(P, e));
        assert_eq!(w.in_flight([&P]), 1);
        w.acked(P, e, 5);
        assert_eq!(w.watermark(P), Some(7));
    }

    #[test]
    fn advanced_reports_each_move_once() {
        let mut w = Watermarks::new();
        let e = w.register(P, 0, 1);
        let mut out = Vec::new();
        w.advanced(&mut out);
        assert_eq!(out, [(P, 0)]);
        out.clear();
        w.advanced(&mut out);
        assert!(out.is_empty());
        w.acked(P, e, 0);
        w.advanced(&mut out);
        assert_eq!(out, [(P, 1)]);
    }

    #[test]
    fn acknowledgements_from_a_revoked_assignment_are_stale() {
        let mut w = Watermarks::new();
        let old = w.register(P, 0, 1);
        assert_eq!(w.remove(P), Some(0));
        assert_eq!(w.outstanding(), 0);
        let new = w.register(P, 0, 1);
        assert_ne!(old, new);
        assert_eq!(w.acked(P, old, 0), Ack::Stale);
        assert!(!w.resent(P, old));
        assert_eq!(w.watermark(P), Some(0));
        w.acked(P, new, 0);
        assert_eq!(w.watermark(P), Some(1));
    }

    #[test]
    fn a_repeated_offset_adds_to_its_record() {
        let mut w = Watermarks::new();
        let e = w.register(P, 4, 1);
        w.register(P, 5, 1);
        w.register(P, 4, 1);
        w.acked(P, e, 4);
        assert_eq!(w.watermark(P), Some(4));
        w.acked(P, e, 4);
        w.acked(P, e, 5);
        assert_eq!(w.watermark(P), Some(6));
    }

    proptest::proptest! {
        /// Whatever the order of acknowledgements, the watermark never passes a record
        /// with an unacknowledged output, and reaches the end once all are in.
        #[test]
        fn the_watermark_never_passes_an_undone_record(
            outputs in proptest::collection::vec(0u32..3, 1..40),
            order in proptest::collection::vec(proptest::num::usize::ANY, 0..120),
        ) {
            let mut w = Watermarks::new();
            let mut acks = Vec::new();
            let mut epoch = 0;
            for (offset, n) in outputs.iter().enumerate() {
                epoch = w.register(P, offset as i64, *n);
                acks.extend(std::iter::repeat_n(offset as i64, *n as usize));
            }
            let mut left: Vec<u32> = outputs.clone();
            for pick in order {
                if acks.is_empty() { break; }
                let offset = acks.swap_remove(pick % acks.len());
                w.acked(P, epoch, offset);
                left[offset as usize] -= 1;
                let first_undone = left.iter().position(|n| *n > 0).unwrap_or(left.len()) as i64;
                proptest::prop_assert_eq!(w.watermark(P), Some(first_undone));
            }
            for offset in acks { w.acked(P, epoch, offset); }
            proptest::prop_assert_eq!(w.watermark(P), Some(outputs.len() as i64));
            proptest::prop_assert_eq!(w.outstanding(), 0);
        }
    }
}
