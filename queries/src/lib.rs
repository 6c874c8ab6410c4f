//! The indicator definitions and the read side: the arithmetic of the reference model
//! ([`formula`]), shared by the engine and the reference; the from-scratch recomputation
//! of `docs/model.md` ([`reference`]) that the engine is checked against; the reads of the
//! indicator series in the store ([`read`]: the city now, a range with a step, one zone and
//! hour, revisions); the records behind a zone's figures ([`explain`]); and the records a
//! running engine keeps at hand to cite them live ([`recent`]).

pub mod explain;
pub mod formula;
pub mod read;
pub mod recent;
pub mod reference;
