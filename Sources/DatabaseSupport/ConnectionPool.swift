/// A connection a ``ConnectionPool`` can hold.
public protocol PoolableConnection: AnyObject, Sendable {
    /// False once the connection is known to be broken; the pool then closes and replaces it.
    var isUsable: Bool { get async }
    /// Closes the connection and releases its thread.
    func close() async
}

/// A bounded pool of connections. Each connection is used by one task at a time.
///
/// A connection whose call failed with a connection error is discarded, and the next caller gets
/// a fresh one: this is how clients reconnect after a server restart.
public actor ConnectionPool<Connection: PoolableConnection> {
    public typealias Factory = @Sendable () async throws -> Connection

    private let factory: Factory
    private let maxConnections: Int
    private let acquireTimeout: Duration
    private var idle: [Connection] = []
    private var open = 0
    private var waiters: [(id: UInt64, continuation: CheckedContinuation<Connection?, any Error>)] = []
    private var nextWaiterID: UInt64 = 0
    private var closed = false

    /// - Parameters:
    ///   - maxConnections: the most connections open at once.
    ///   - acquireTimeout: how long a caller waits for a free connection before ``DatabaseError/Code/poolTimeout``.
    ///   - factory: opens a new connection.
    public init(maxConnections: Int, acquireTimeout: Duration = .seconds(30), factory: @escaping Factory) {
        precondition(maxConnections > 0, "a pool needs at least one connection")
        self.maxConnections = maxConnections
        self.acquireTimeout = acquireTimeout
        self.factory = factory
    }

    /// Runs `body` with a connection of its own, returning the connection to the pool afterwards.
    public nonisolated func withConnection<T: Sendable>(
        _ body: (Connection) async throws -> T
    ) async throws -> T {
        let connection = try await acquire()
        do {
            let result = try await body(connection)
            await release(connection, broken: false)
            return result
        } catch let error as DatabaseError {
            await release(connection, broken: error.code == .connectionClosed || error.code == .connectionFailed)
            throw error
        } catch {
            await release(connection, broken: false)
            throw error
        }
    }

    /// Number of open connections and idle ones, for metrics and tests.
    public var statistics: (open: Int, idle: Int, waiting: Int) { (open, idle.count, waiters.count) }

    /// Closes idle connections, refuses new callers and fails the waiting ones.
    public func shutdown() async {
        closed = true
        let toClose = idle
        idle.removeAll()
        open -= toClose.count
        for waiter in waiters {
            waiter.continuation.resume(throwing: DatabaseError(.poolClosed, message: "the connection pool was shut down"))
        }
        waiters.removeAll()
        for connection in toClose { await connection.close() }
    }

    private func acquire() async throws -> Connection {
        while true {
            if closed { throw DatabaseError(.poolClosed, message: "the connection pool was shut down") }
            if let connection = idle.popLast() {
                if await connection.isUsable { return connection }
                open -= 1
                await connection.close()
                continue
            }
            if open < maxConnections {
                open += 1
                do {
                    return try await factory()
                } catch {
                    open -= 1
                    wakeOneWaiter()
                    throw error
                }
            }
            // Wait for a release. `nil` means "a slot opened up: try again".
            nextWaiterID &+= 1
            let id = nextWaiterID
            let timeout = acquireTimeout
            let timer = Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.timeOut(waiter: id)
            }
            defer { timer.cancel() }
            if let connection = try await withCheckedThrowingContinuation({ continuation in
                waiters.append((id, continuation))
            }) {
                return connection
            }
        }
    }

    private func timeOut(waiter id: UInt64) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        let waiter = waiters.remove(at: index)
        waiter.continuation.resume(
            throwing: DatabaseError(.poolTimeout, message: "no database connection became free within \(acquireTimeout)"))
    }

    private func release(_ connection: Connection, broken: Bool) async {
        if broken || closed {
            open -= 1
            await connection.close()
            wakeOneWaiter()
            return
        }
        if !waiters.isEmpty {
            let waiter = waiters.removeFirst()
            waiter.continuation.resume(returning: connection)
            return
        }
        idle.append(connection)
    }

    private func wakeOneWaiter() {
        guard !waiters.isEmpty else { return }
        waiters.removeFirst().continuation.resume(returning: nil)
    }
}
