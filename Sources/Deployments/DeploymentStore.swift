import Broker
import ConcurrencySupport
import DatabaseSupport
import Foundation

/// The control-plane rows the orchestrator and the supervisors share, in the broker database
/// (schema version 3): `exchanger_deployments`, `exchanger_supervisors`, `exchanger_workers`.
///
/// The orchestrator writes one deployment per (exchange, program) and waits for its workers to be
/// gone before it deletes the exchange's queues. Each supervisor keeps a heartbeat lease on its
/// own row, claims its fair share of the deployments that need an owner through per-deployment
/// leases, and reports which workers it runs. Leases are compared with the database clock
/// (PostgreSQL `now()`); with SQLite, which serves one host, with the callers' clock.
///
/// Writes that change deployments notify ``deploymentsNotification``; writes that change worker
/// rows notify ``workersNotification`` (see ``waitForChange(after:timeout:)``).
public struct DeploymentStore: Sendable {
    public let broker: Broker

    /// The notification deployment changes send (desired state, spec, removal, released ownership).
    public static let deploymentsNotification = "exchanger.deployments"
    /// The notification worker-row changes send.
    public static let workersNotification = "exchanger.workers"

    public init(broker: Broker) {
        self.broker = broker
    }

    // MARK: Orchestrator side

    /// Inserts the deployment, or updates its min/max procs, messages per proc and desired state.
    /// Writing an identical spec again changes nothing.
    /// - Throws: ``DeploymentError/Code/invalidArgument`` for a bad spec;
    ///   ``DeploymentError/Code/conflict`` when the id exists for another exchange, program or queue,
    ///   or the exchange has a deployment of the program under another id.
    @discardableResult
    public func upsert(_ spec: DeploymentSpec) async throws -> Deployment {
        try spec.validate()
        return try await transaction { st in
            if let existing = try await Self.deployment(st, id: spec.id, lock: true) {
                return try await Self.update(st, existing, to: spec)
            }
            let binds: [SQLValue] = [
                .text(spec.id), .text(spec.exchangeID), .text(spec.program), .text(spec.queue), SQLValue(spec.minProcs),
                SQLValue(spec.maxProcs), SQLValue(spec.messagesPerProc), .text(spec.desiredState.rawValue),
            ]
            let inserted = try await st.query(binds) { t in
                """
                INSERT INTO exchanger_deployments (id, exchange_id, program, queue, min_procs, max_procs, messages_per_proc,
                    desired_state, created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \(t.now), \(t.now))
                ON CONFLICT DO NOTHING
                RETURNING \(StoreSQL.deploymentColumns(t))
                """
            }
            if let row = inserted.first {
                try await st.tx.notify(Self.deploymentsNotification)
                return try StoreSQL.deployment(row)
            }
            // A concurrent upsert inserted this id first, or the exchange has the program under another id.
            if let existing = try await Self.deployment(st, id: spec.id, lock: true) {
                return try await Self.update(st, existing, to: spec)
            }
            let other = try await st.query([.text(spec.exchangeID), .text(spec.program)]) { _ in
                "SELECT id FROM exchanger_deployments WHERE exchange_id = $1 AND program = $2"
            }.first?["id"].string ?? "?"
            throw DeploymentError(.conflict,
                "exchange '\(spec.exchangeID)' already has a deployment of program '\(spec.program)': '\(other)'")
        }
    }

    private static func update(_ st: StoreTransaction, _ existing: Deployment, to spec: DeploymentSpec) async throws -> Deployment {
        guard existing.exchangeID == spec.exchangeID, existing.program == spec.program, existing.queue == spec.queue else {
            throw DeploymentError(.conflict, """
                deployment '\(spec.id)' exists for exchange '\(existing.exchangeID)', program '\(existing.program)', \
                queue '\(existing.queue)'; it cannot move to exchange '\(spec.exchangeID)', program '\(spec.program)', \
                queue '\(spec.queue)'
                """)
        }
        if existing.spec == spec { return existing }
        let rows = try await st.query([
            .text(spec.id), SQLValue(spec.minProcs), SQLValue(spec.maxProcs), SQLValue(spec.messagesPerProc),
            .text(spec.desiredState.rawValue),
        ]) { t in
            """
            UPDATE exchanger_deployments
            SET min_procs = $2, max_procs = $3, messages_per_proc = $4, desired_state = $5, updated_at = \(t.now)
            WHERE id = $1
            RETURNING \(StoreSQL.deploymentColumns(t))
            """
        }
        guard let row = rows.first else { throw DeploymentError(.conflict, "deployment '\(spec.id)' was removed meanwhile") }
        try await st.tx.notify(deploymentsNotification)
        return try StoreSQL.deployment(row)
    }

    /// Changes the process bounds of a running deployment (`exchanger scale`); the owning
    /// supervisor applies them on its next pass, still within its supervisor.conf bounds (the
    /// tighter wins). Returns nil when there is no such deployment or it is stopped (its exchange
    /// is being torn down): a stopped deployment is never started again by a change of bounds.
    /// - Throws: ``DeploymentError/Code/invalidArgument`` for bounds out of range.
    public func setBounds(id: String, minProcs: Int, maxProcs: Int) async throws -> Deployment? {
        try Validation.identifier(id, what: "deployment id")
        guard minProcs >= 0 else { throw DeploymentError(.invalidArgument, "min procs must be 0 or more, not \(minProcs)") }
        guard maxProcs >= minProcs else {
            throw DeploymentError(.invalidArgument, "max procs (\(maxProcs)) must not be less than min procs (\(minProcs))")
        }
        guard maxProcs <= DeploymentSpec.maxProcsLimit else {
            throw DeploymentError(.invalidArgument, "max procs must be at most \(DeploymentSpec.maxProcsLimit), not \(maxProcs)")
        }
        return try await transaction { st in
            let rows = try await st.query([.text(id), SQLValue(minProcs), SQLValue(maxProcs)]) { t in
                """
                UPDATE exchanger_deployments SET min_procs = $2, max_procs = $3, updated_at = \(t.now)
                WHERE id = $1 AND desired_state = 'running'
                RETURNING \(StoreSQL.deploymentColumns(t))
                """
            }
            guard let row = rows.first else { return nil }
            try await st.tx.notify(Self.deploymentsNotification)
            return try StoreSQL.deployment(row)
        }
    }

    /// Sets the deployment's desired state to stopped: its supervisor lets the workers finish the
    /// batch in hand and exit. Returns false when there is no such deployment.
    @discardableResult
    public func requestStop(id: String) async throws -> Bool {
        try Validation.identifier(id, what: "deployment id")
        return try await transaction { st in
            let changed = try await st.query([.text(id)]) { t in
                """
                UPDATE exchanger_deployments SET desired_state = 'stopped', updated_at = \(t.now)
                WHERE id = $1 AND desired_state <> 'stopped'
                RETURNING id
                """
            }
            if !changed.isEmpty {
                try await st.tx.notify(Self.deploymentsNotification)
                return true
            }
            return try await !st.query([.text(id)]) { _ in "SELECT 1 FROM exchanger_deployments WHERE id = $1" }.isEmpty
        }
    }

    /// Sets every deployment of the exchange to stopped; returns their ids.
    @discardableResult
    public func requestStop(exchangeID: String) async throws -> [String] {
        try Validation.identifier(exchangeID, what: "exchange id")
        return try await transaction { st in
            let ids = try await Self.lockExchange(st, exchangeID)
            let changed = try await st.query([.text(exchangeID)]) { t in
                """
                UPDATE exchanger_deployments SET desired_state = 'stopped', updated_at = \(t.now)
                WHERE exchange_id = $1 AND desired_state <> 'stopped'
                RETURNING id
                """
            }
            if !changed.isEmpty { try await st.tx.notify(Self.deploymentsNotification) }
            return ids
        }
    }

    /// Deletes the deployment row. Returns false when there was none.
    /// - Throws: ``DeploymentError/Code/workersRunning`` while a live worker is recorded for it
    ///   (see ``liveWorkers(deploymentID:exchangeID:)``); nothing is deleted.
    @discardableResult
    public func remove(id: String) async throws -> Bool {
        try Validation.identifier(id, what: "deployment id")
        return try await transaction { st in
            guard try await Self.deployment(st, id: id, lock: true) != nil else { return false }
            try await Self.refuseLiveWorkers(st, deploymentIDs: [id])
            try await st.query([.text(id)]) { _ in "DELETE FROM exchanger_deployments WHERE id = $1" }
            try await st.tx.notify(Self.deploymentsNotification)
            return true
        }
    }

    /// Deletes every deployment of the exchange, all or none; returns their ids.
    /// - Throws: ``DeploymentError/Code/workersRunning`` while any of them has a live worker.
    @discardableResult
    public func remove(exchangeID: String) async throws -> [String] {
        try Validation.identifier(exchangeID, what: "exchange id")
        return try await transaction { st in
            let ids = try await Self.lockExchange(st, exchangeID)
            guard !ids.isEmpty else { return [] }
            try await Self.refuseLiveWorkers(st, deploymentIDs: ids)
            try await st.query([.text(exchangeID)]) { _ in "DELETE FROM exchanger_deployments WHERE exchange_id = $1" }
            try await st.tx.notify(Self.deploymentsNotification)
            return ids
        }
    }

    /// Locks the exchange's deployment rows in id order (so concurrent writers cannot deadlock)
    /// and returns their ids.
    private static func lockExchange(_ st: StoreTransaction, _ exchangeID: String) async throws -> [String] {
        try await st.query([.text(exchangeID)]) { t in
            "SELECT id FROM exchanger_deployments WHERE exchange_id = $1 ORDER BY id \(t.lock("FOR UPDATE"))"
        }.compactMap { $0["id"].string }
    }

    private static func refuseLiveWorkers(_ st: StoreTransaction, deploymentIDs: [String]) async throws {
        var live: [WorkerRecord] = []
        for id in deploymentIDs {
            live += try await st.query([.text(id)]) { t in
                """
                SELECT \(StoreSQL.workerColumns(t)) FROM exchanger_workers w
                WHERE w.deployment_id = $1 AND \(StoreSQL.liveWorker(t))
                ORDER BY w.program, w.instance, w.supervisor_id
                """
            }.map(StoreSQL.worker)
        }
        guard live.isEmpty else {
            let listed = live.prefix(5).map { worker in
                "\(worker.deploymentID ?? "")/\(worker.program)#\(worker.instance) \(worker.state) on \(worker.supervisorID)"
                    + (worker.pid.map { " pid \($0)" } ?? "")
            }.joined(separator: ", ")
            throw DeploymentError(.workersRunning,
                "\(live.count) live worker(s) still recorded: \(listed)\(live.count > 5 ? ", …" : ""); stop them first")
        }
    }

    /// Deployments, of one exchange or all, oldest first.
    public func deployments(exchangeID: String? = nil) async throws -> [Deployment] {
        try await transaction { st in
            try await st.query([SQLValue(exchangeID)]) { t in
                """
                SELECT \(StoreSQL.deploymentColumns(t)) FROM exchanger_deployments
                WHERE \(t.nullableText(1)) IS NULL OR exchange_id = $1
                ORDER BY created_at, id
                """
            }.map(StoreSQL.deployment)
        }
    }

    /// The deployment with this id, or nil.
    public func deployment(id: String) async throws -> Deployment? {
        try await transaction { st in try await Self.deployment(st, id: id, lock: false) }
    }

    static func deployment(_ st: StoreTransaction, id: String, lock: Bool) async throws -> Deployment? {
        try await st.query([.text(id)]) { t in
            "SELECT \(StoreSQL.deploymentColumns(t)) FROM exchanger_deployments WHERE id = $1 \(lock ? t.lock("FOR UPDATE") : "")"
        }.first.map(StoreSQL.deployment)
    }

    /// The live workers — recorded by a supervisor whose lease has not expired, in a state that has
    /// or will have a process (not STOPPED, EXITED, FAILED) — of one deployment, of one exchange's
    /// deployments, or all (global programs included). A supervisor killed with SIGKILL takes its
    /// workers with it (parent-death signal), so its rows stop counting once its lease is gone.
    public func liveWorkers(deploymentID: String? = nil, exchangeID: String? = nil) async throws -> [WorkerRecord] {
        try await transaction { st in
            try await st.query([SQLValue(deploymentID), SQLValue(exchangeID)]) { t in
                """
                SELECT \(StoreSQL.workerColumns(t)) FROM exchanger_workers w
                WHERE \(StoreSQL.liveWorker(t))
                  AND (\(t.nullableText(1)) IS NULL OR w.deployment_id = $1)
                  AND (\(t.nullableText(2)) IS NULL OR w.deployment_id IN (SELECT id FROM exchanger_deployments WHERE exchange_id = $2))
                ORDER BY w.deployment_id, w.program, w.instance, w.supervisor_id
                """
            }.map(StoreSQL.worker)
        }
    }

    /// The workers of an exchange's deployments that crash-loop (`FAILED`: they die as soon as they
    /// start, e.g. a worker whose configuration is incomplete exits 78), as supervisors whose lease
    /// has not expired reported them.
    public func failingWorkers(exchangeID: String) async throws -> [WorkerRecord] {
        try await transaction { st in
            try await st.query([.text(exchangeID), .text(WorkerState.failed.rawValue)]) { t in
                """
                SELECT \(StoreSQL.workerColumns(t)) FROM exchanger_workers w
                WHERE w.state = $2
                  AND w.deployment_id IN (SELECT id FROM exchanger_deployments WHERE exchange_id = $1)
                  AND EXISTS (SELECT 1 FROM exchanger_supervisors s WHERE s.id = w.supervisor_id AND s.lease_expires_at > \(t.now))
                ORDER BY w.program, w.instance, w.supervisor_id
                """
            }.map(StoreSQL.worker)
        }
    }

    /// Waits until no live worker of the exchange is recorded (see
    /// ``liveWorkers(deploymentID:exchangeID:)``): woken by worker-row changes, and looking at least
    /// every `pollInterval` (a dead supervisor's rows stop counting when its lease ends, which
    /// nobody announces). Returns false when `timeout` passed first.
    public func waitUntilNoWorkers(exchangeID: String, timeout: Duration, pollInterval: Duration = .seconds(1)) async throws -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let mark = try await broker.notificationMark(Self.workersNotification)
            if try await liveWorkers(exchangeID: exchangeID).isEmpty { return true }
            let now = clock.now
            if now >= deadline { return false }
            // Cancellation, or a stop (SIGTERM) of the caller, ends the wait.
            try StopRequest.check()
            try await broker.waitForNotification(after: mark, timeout: min(deadline - now, pollInterval))
        }
    }

    // MARK: Changes

    /// Marks the present in the history of deployment changes; take it before reading the
    /// deployments, then ``waitForChange(after:timeout:)`` with it.
    public func changeMark() async throws -> NotificationMark {
        try await broker.notificationMark(Self.deploymentsNotification)
    }

    /// Waits until a deployment changed (written in any process) after `mark` (after now when
    /// `nil`), or `timeout` passed. May return early without a change, never late. Lease renewals
    /// and count reports are not changes.
    public func waitForChange(after mark: NotificationMark? = nil, timeout: Duration) async throws {
        if let mark {
            try await broker.waitForNotification(after: mark, timeout: timeout)
        } else {
            try await broker.waitForNotification(Self.deploymentsNotification, timeout: timeout)
        }
    }

    // MARK: Transactions

    /// Runs `body` in one broker transaction.
    ///
    /// PostgreSQL: broker sessions turn sequential scans off, for the queue tables (see
    /// `BrokerConfiguration.postgres`). These tables hold a few rows per exchange and supervisor,
    /// and with sequential scans "disabled" their plans cost 10¹⁰, enough to have every statement
    /// JIT-compiled (measured: 250–500 ms per claim instead of under 1 ms). So the store's
    /// transactions plan normally again, and without JIT, until they end.
    func transaction<T: Sendable>(_ body: @Sendable (StoreTransaction) async throws -> T) async throws -> T {
        try await broker.transaction { tx in
            if tx.dialect == .postgres {
                try await tx.query("SELECT set_config('enable_seqscan', 'on', true), set_config('jit', 'off', true)")
            }
            return try await body(StoreTransaction(tx: tx, clock: StoreSQL.milliseconds(Date())))
        }
    }
}
