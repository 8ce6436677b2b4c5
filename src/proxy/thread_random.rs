//! The random source of the request path: the thread's generator, as a value that a request
//! can hold across `.await` (the generator itself cannot leave its thread, and a request
//! moves between threads). Every draw goes to the generator of the thread it runs on.

use std::convert::Infallible;

use rand::{Rng, TryRng};

/// Draws from `rand::rng()` of the current thread.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ThreadRandom;

impl TryRng for ThreadRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(rand::rng().next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(rand::rng().next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        rand::rng().fill_bytes(dst);
        Ok(())
    }
}
