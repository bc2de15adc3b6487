//! Span links: which request enqueued a job. A bounded index from enqueue span
//! ids and request trace ids to the request's route.

use super::hash::IdMap;
use crate::model::SpanLink;
use std::collections::VecDeque;

/// Where a linked span came from: the request that enqueued a job.
#[derive(Clone)]
pub(super) struct LinkSource {
    pub(super) route: String,
    pub(super) trace_id: u128,
}

/// A bounded map from span ids (enqueue spans) and trace ids (request traces) to
/// their request's route, oldest entries forgotten first.
#[derive(Default)]
pub(super) struct LinkIndex {
    pub(super) by_span: IdMap<u64, LinkSource>,
    pub(super) by_trace: IdMap<u128, LinkSource>,
    pub(super) order: VecDeque<(bool, u128)>,
}

impl LinkIndex {
    pub(super) fn insert_span(&mut self, span: u64, src: LinkSource, cap: usize) {
        if self.by_span.insert(span, src).is_none() {
            self.order.push_back((true, u128::from(span)));
        }
        self.trim(cap);
    }

    pub(super) fn insert_trace(&mut self, trace: u128, src: LinkSource, cap: usize) {
        if self.by_trace.insert(trace, src).is_none() {
            self.order.push_back((false, trace));
        }
        self.trim(cap);
    }

    fn trim(&mut self, cap: usize) {
        while self.order.len() > cap {
            match self.order.pop_front() {
                Some((true, k)) => {
                    self.by_span.remove(&(k as u64));
                }
                Some((false, k)) => {
                    self.by_trace.remove(&k);
                }
                None => break,
            }
        }
    }

    /// The request a link points into: the enqueue span itself, else its trace.
    pub(super) fn resolve(&self, l: &SpanLink) -> Option<&LinkSource> {
        self.by_span
            .get(&l.span_id)
            .filter(|s| s.trace_id == l.trace_id)
            .or_else(|| self.by_trace.get(&l.trace_id))
    }
}
