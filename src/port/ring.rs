//! The shared-memory ring (`kind=posix-shm layout=ring`,
//! `docs/shm-ring.md`) as a source and a sink of messages: one record is one
//! message. The ring has an end of its own: `read` ends once every producer
//! is done (closed for good, or ended as ipc-run sees it) and the ring is
//! empty.

use std::time::Duration;

use crate::child::Port;
use crate::child::ring::{Consumer, Producer, Received, RingError};

use super::PortError;
use super::kinds::{Limit, Recv, Sink, Source, Wait};

fn ring_error(port: &str, error: RingError) -> PortError {
    match error {
        RingError::TooLarge { len, max } => PortError::TooLarge {
            size: len.to_string(),
            limit: format!("the largest record ({max} bytes) of ring port `{port}`"),
        },
        RingError::NoMemory { len } => {
            PortError::memory(len, format!("a record of ring port `{port}`"))
        }
        RingError::Port { .. } | RingError::BadLayout(_) => open_error(port, error),
        other => PortError::io(
            format!("ring port `{port}`"),
            std::io::Error::other(other.to_string()),
        ),
    }
}

/// Any failure while opening a ring port: the port could not be opened.
fn open_error(port: &str, error: RingError) -> PortError {
    PortError::open(
        format!("ring port `{port}`"),
        std::io::Error::other(error.to_string()),
    )
}

/// Reads records.
pub struct RingSource {
    consumer: Consumer,
    port: String,
    buf: Vec<u8>,
}

impl RingSource {
    /// Opens the ring of `port` as its reader.
    pub fn open(port: &mut Port) -> Result<RingSource, PortError> {
        let name = port.name().to_owned();
        let consumer = Consumer::from_port(port).map_err(|e| open_error(&name, e))?;
        Ok(RingSource {
            consumer,
            port: name,
            buf: Vec::new(),
        })
    }
}

impl Source for RingSource {
    fn recv(&mut self, wait: Wait) -> Result<Recv<'_>, PortError> {
        let timeout = match wait {
            Wait::Now => Some(Duration::ZERO),
            Wait::For(timeout) => timeout,
        };
        match self.consumer.recv(&mut self.buf, timeout) {
            Ok(Received::Record(n)) => Ok(Recv::Message(&self.buf[..n])),
            Ok(Received::End) => Ok(Recv::End),
            Err(RingError::TimedOut) => Ok(Recv::Nothing),
            Err(error) => Err(ring_error(&self.port, error)),
        }
    }
}

/// Writes records; closes the ring for good at the end.
pub struct RingSink {
    producer: Option<Producer>,
    port: String,
    limit: Limit,
}

impl RingSink {
    /// Opens the ring of `port` as one of its producers.
    pub fn open(port: &mut Port) -> Result<RingSink, PortError> {
        let name = port.name().to_owned();
        let producer = Producer::from_port(port).map_err(|e| open_error(&name, e))?;
        let size = producer.max_record();
        Ok(RingSink {
            producer: Some(producer),
            limit: Limit {
                size,
                name: format!("the largest record ({size} bytes) of ring port `{name}`"),
            },
            port: name,
        })
    }
}

impl Sink for RingSink {
    fn limit(&self) -> Limit {
        self.limit.clone()
    }

    fn send(&mut self, message: &[u8]) -> Result<(), PortError> {
        let Some(producer) = self.producer.as_mut() else {
            return Ok(());
        };
        producer
            .send(message, None)
            .map_err(|e| ring_error(&self.port, e))
    }

    fn finish(&mut self) {
        if let Some(producer) = self.producer.take() {
            let _ = producer.close();
        }
    }
}
