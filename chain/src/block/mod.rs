//! Blocks: header, coinbase commitment, PcP wire format, proof tree and validation.
