//! The indicator definitions and the read side: the arithmetic of the reference model
//! ([`formula`]), shared by the engine and the reference, and the from-scratch recomputation
//! of `indicators.md` ([`reference`]) that the engine is checked against.

pub mod formula;
pub mod reference;
