//! IEEE-754 binary32/binary64 arithmetic as SSE and SSE2 perform it, in integers only, so
//! that results (NaN payloads included) are the same on every host.
