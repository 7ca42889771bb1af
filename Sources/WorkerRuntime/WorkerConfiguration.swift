/// How a worker polls and handles its queue. Every value has a default; the executables take
/// each from a flag or its environment variable (see ``WorkerOptions``).
public struct WorkerConfiguration: Sendable {
    /// Which queues the worker serves.
    public enum Source: Sendable, Hashable {
        /// Bound: exactly this queue (`--queue NAME`).
        case queue(String)
        /// Unbound: every unsealed queue whose `program` attribute is this name (`--program NAME`).
        case program(String)
    }

    public var source: Source
    /// The program name used in logs and metrics (`s3-copy`, `status-update`, `dlq`).
    public var program: String
    /// Messages received per batch (`--batch-size`, `EXCHANGER_WORKER_BATCH_SIZE`, default 10).
    public var batchSize: Int = 10
    /// Messages of a batch handled at once (`--concurrency`, `EXCHANGER_WORKER_CONCURRENCY`, default 8).
    public var concurrency: Int = 8
    /// Long-poll wait of a receive (`--wait`, `EXCHANGER_WORKER_WAIT_SECONDS`, default 20 s).
    public var wait: Duration = .seconds(20)
    /// Lease per receive; `nil` uses the queue's visibility timeout (`--visibility-timeout`,
    /// `EXCHANGER_WORKER_VISIBILITY_TIMEOUT_SECONDS`).
    public var visibilityTimeout: Duration?
    /// Backoff of recoverable failures (`EXCHANGER_WORKER_BACKOFF_BASE_SECONDS` default 2 s,
    /// `EXCHANGER_WORKER_BACKOFF_CAP_SECONDS` default 300 s; never under 1 s).
    public var backoff = RetryBackoff()
    /// How often an unbound worker looks for new or removed queues (`EXCHANGER_WORKER_QUEUE_REFRESH_SECONDS`, default 5 s).
    public var queueRefreshInterval: Duration = .seconds(5)
    /// Longest wait of an unbound worker on one queue when all its queues are empty (default 1 s).
    public var unboundIdleWait: Duration = .seconds(1)
    /// Wait after a failed receive before trying again, doubling up to 10× (default 500 ms).
    public var receiveErrorDelay: Duration = .milliseconds(500)
    /// How often a worker whose handler's ``ReceiveGate`` refused asks it again (default 250 ms).
    public var gateRecheckInterval: Duration = .milliseconds(250)
    /// The first pause of receiving after the object store refused access
    /// (`EXCHANGER_WORKER_STORAGE_HOLD_SECONDS`, default 10 s); it doubles while the store keeps
    /// refusing, up to ``storageHoldMaximum``.
    public var storageHold: Duration = .seconds(10)
    /// The longest such pause (`EXCHANGER_WORKER_STORAGE_HOLD_MAX_SECONDS`, default 300 s).
    public var storageHoldMaximum: Duration = .seconds(300)
    /// How long the clean-up after the poll loop may take (closing the engine, the stores, the
    /// broker's connections, the metrics endpoint) before the process exits anyway
    /// (`EXCHANGER_WORKER_EXIT_GRACE_SECONDS`, default 5 s):
    /// a connection stuck on a dead network link must not keep a worker that decided to exit alive.
    public var exitGrace: Duration = .seconds(5)
    /// How often the worker renews its row in `exchanger_worker_presence`, which `exchanger ps`
    /// lists (`EXCHANGER_WORKER_PRESENCE_SECONDS`, default 10 s; the row expires after three
    /// missed renewals); nil announces nothing.
    public var presenceInterval: Duration? = .seconds(10)

    public init(source: Source, program: String) {
        self.source = source
        self.program = program
    }

    /// The lease extension period for a slow handler: a third of the lease, at least 100 ms.
    func extensionInterval(lease: Duration) -> Duration { max(.milliseconds(100), lease / 3) }
}
