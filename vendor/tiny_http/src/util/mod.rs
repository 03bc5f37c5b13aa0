pub use self::messages_queue::MessagesQueue;

mod messages_queue;
