use crate::codec::{CodecResult, Message, ZmqFramedWrite};

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const WRITE_BATCH_LIMIT: usize = 128;

/// PATCH(opsconsole): what is queued towards one peer, in messages and payload bytes, against
/// the bounds of `SocketOptions::send_queue_limits`. The channel alone cannot bound it: its
/// capacity grows by one for every clone of its sender, and PUB fanout clones the sender for
/// each message, so upstream's "100,000 messages" never filled and a subscriber that stopped
/// reading grew the publisher's memory without limit.
#[derive(Debug)]
pub(crate) struct SendBudget {
    messages: AtomicUsize,
    bytes: AtomicUsize,
    max_messages: usize,
    max_bytes: usize,
}

impl SendBudget {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_messages,
            max_bytes,
        }
    }

    /// Payload bytes of a queued message.
    pub(crate) fn size_of(message: &Message) -> usize {
        match message {
            Message::Message(m) => m.iter().map(|frame| frame.len()).sum(),
            Message::Greeting(_) | Message::Command(_) | Message::Raw(_) => 0,
        }
    }

    /// Takes room for one message of `bytes`; false when the queue is over a bound. A message
    /// bigger than the byte bound is let into an empty queue, so it is never unsendable.
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        let messages = self.messages.fetch_add(1, Ordering::AcqRel);
        let queued = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        let fits = messages < self.max_messages
            && (messages == 0 || queued.saturating_add(bytes) <= self.max_bytes);
        if !fits {
            self.release(bytes);
        }
        fits
    }

    /// Gives back the room of one message (saturating: a peer that reconnected under the same
    /// identity may be sent a message reserved against its predecessor's budget).
    pub(crate) fn release(&self, bytes: usize) {
        let _ = self
            .messages
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            });
        let _ = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(bytes))
            });
    }
}

/// Writes queued socket messages into the underlying framed sink in small batches.
///
/// PATCH(opsconsole): `budget` is released as each message leaves the queue.
#[inline]
pub(crate) async fn write_message_queue(
    mut queue_receiver: mpsc::Receiver<Message>,
    mut send_queue: ZmqFramedWrite,
    budget: Option<Arc<SendBudget>>,
) -> CodecResult<()> {
    let release = |message: &Message| {
        if let Some(budget) = &budget {
            budget.release(SendBudget::size_of(message));
        }
    };
    while let Some(message) = queue_receiver.next().await {
        release(&message);
        // When backlog already exists, feed a batch before flushing once to avoid per-message flush cost during bursts.
        send_queue.feed(message).await?;

        for _ in 1..WRITE_BATCH_LIMIT {
            let message = match queue_receiver.try_recv() {
                Ok(message) => message,
                Err(_) => break,
            };
            release(&message);
            send_queue.feed(message).await?;
        }

        send_queue.flush().await?;
    }

    Ok(())
}

#[cfg(test)]
mod tests {
    mod batch_boundaries;

    use super::*;
    use crate::codec::{CodecError, ZmqCodec};
    use crate::ZmqMessage;

    use bytes::Bytes;
    use futures::{AsyncWrite, SinkExt};
    use parking_lot::Mutex;
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    #[derive(Default)]
    struct WriteStats {
        bytes: Vec<u8>,
        flushes: usize,
    }

    struct RecordingWrite {
        stats: Arc<Mutex<WriteStats>>,
    }

    impl AsyncWrite for RecordingWrite {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let mut stats = self.stats.lock();
            stats.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.stats.lock().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    struct FailingWrite;

    impl AsyncWrite for FailingWrite {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            _buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "writer failed",
            )))
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[crate::async_rt::test]
    async fn test_write_message_queue_batches_ready_messages_into_one_flush() {
        let (mut sender, receiver) = mpsc::channel(8);
        sender
            .send(Message::Message(ZmqMessage::from(Bytes::from_static(b"a"))))
            .await
            .expect("send first message");
        sender
            .send(Message::Message(ZmqMessage::from(Bytes::from_static(b"b"))))
            .await
            .expect("send second message");
        sender
            .send(Message::Message(ZmqMessage::from(Bytes::from_static(b"c"))))
            .await
            .expect("send third message");
        drop(sender);

        let stats = Arc::new(Mutex::new(WriteStats::default()));
        let writer = RecordingWrite {
            stats: Arc::clone(&stats),
        };
        let send_queue = ZmqFramedWrite::new(Box::new(writer), ZmqCodec::new());

        write_message_queue(receiver, send_queue, None)
            .await
            .expect("write queued messages");

        let stats = stats.lock();
        assert_eq!(1, stats.flushes);
        assert_eq!(
            stats.bytes,
            vec![0x00, 0x01, b'a', 0x00, 0x01, b'b', 0x00, 0x01, b'c']
        );
    }

    #[crate::async_rt::test]
    async fn test_write_message_queue_returns_writer_errors() {
        let (mut sender, receiver) = mpsc::channel(1);
        sender
            .send(Message::Message(ZmqMessage::from(Bytes::from_static(b"a"))))
            .await
            .expect("send message");
        drop(sender);

        let send_queue = ZmqFramedWrite::new(Box::new(FailingWrite), ZmqCodec::new());
        let error = write_message_queue(receiver, send_queue, None)
            .await
            .expect_err("write error");

        let CodecError::Io(error) = error else {
            panic!("unexpected error type");
        };
        assert_eq!(io::ErrorKind::BrokenPipe, error.kind());
    }
}
