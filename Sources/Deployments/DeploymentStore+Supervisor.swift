import Broker
import DatabaseSupport
import Foundation

extension DeploymentStore {
    // MARK: Supervisors

    /// Writes the supervisor's row (a fresh start: started and heartbeat now, lease for `lease`)
    /// and deletes worker rows left under its id by an earlier run, whose workers died with it.
    /// Registering an id that a live supervisor uses takes the row over: ids must be unique.
    public func register(_ identity: SupervisorIdentity, lease: Duration) async throws {
        try identity.validate()
        try Validation.lease(lease)
        try await transaction { st in
            try await st.query([
                .text(identity.id), .text(identity.hostname), SQLValue(Int(identity.pid)), .integer(lease.milliseconds),
                SQLValue(identity.httpPort), .text(identity.status.rawValue),
            ]) { t in
                """
                INSERT INTO exchanger_supervisors (id, hostname, pid, started_at, heartbeat_at, lease_expires_at, http_port, status)
                VALUES ($1, $2, $3, \(t.now), \(t.now), \(t.plus(4)), $5, $6)
                ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid, started_at = excluded.started_at,
                    heartbeat_at = excluded.heartbeat_at, lease_expires_at = excluded.lease_expires_at,
                    http_port = excluded.http_port, status = excluded.status
                """
            }
            let removed = try await st.query([.text(identity.id)]) { _ in
                "DELETE FROM exchanger_workers WHERE supervisor_id = $1 RETURNING program"
            }
            if !removed.isEmpty { try await st.tx.notify(Self.workersNotification) }
        }
    }

    /// Extends the supervisor's lease to `lease` from now (database clock) and records the
    /// heartbeat, and the status when given.
    /// - Throws: ``DeploymentError/Code/leaseLost`` when the row is gone or its lease has already
    ///   expired: other supervisors may have taken its deployments and ignore its workers, so it
    ///   must stop its per-exchange workers and ``register(_:lease:)`` again.
    public func heartbeat(id: String, lease: Duration, status: SupervisorStatus? = nil) async throws {
        try Validation.identifier(id, what: "supervisor id")
        try Validation.lease(lease)
        if let status { try Validation.identifier(status.rawValue, what: "status") }
        try await transaction { st in
            let rows = try await st.query([.text(id), .integer(lease.milliseconds), SQLValue(status?.rawValue)]) { t in
                """
                UPDATE exchanger_supervisors
                SET heartbeat_at = \(t.now), lease_expires_at = \(t.plus(2)), status = coalesce(\(t.nullableText(3)), status)
                WHERE id = $1 AND lease_expires_at > \(t.now)
                RETURNING id
                """
            }
            if rows.isEmpty { throw Self.leaseLost(id) }
        }
    }

    /// A clean exit: deletes the supervisor's row and its worker rows, and gives up its deployments
    /// (other supervisors may claim them at once).
    public func deregister(id: String) async throws {
        try Validation.identifier(id, what: "supervisor id")
        try await transaction { st in
            try await Self.forget(st, supervisorID: id)
        }
    }

    /// Deletes the supervisors whose lease expired at least `grace` ago, with their worker rows,
    /// and gives up their deployments; returns their ids. Any supervisor may run this on every pass.
    @discardableResult
    public func expireDeadSupervisors(grace: Duration = .zero) async throws -> [String] {
        guard grace >= .zero else { throw DeploymentError(.invalidArgument, "grace must not be negative") }
        return try await transaction { st in
            let expired = try await st.query([.integer(grace.milliseconds)]) { t in
                "SELECT id FROM exchanger_supervisors WHERE lease_expires_at <= \(t.minus(1)) ORDER BY id \(t.lock("FOR UPDATE SKIP LOCKED"))"
            }.compactMap { $0["id"].string }
            for id in expired { try await Self.forget(st, supervisorID: id) }
            return expired
        }
    }

    /// Deletes a supervisor's row and worker rows and clears its deployment ownership; notifies.
    private static func forget(_ st: StoreTransaction, supervisorID id: String) async throws {
        try await st.query([.text(id)]) { _ in "DELETE FROM exchanger_supervisors WHERE id = $1" }
        let workers = try await st.query([.text(id)]) { _ in
            "DELETE FROM exchanger_workers WHERE supervisor_id = $1 RETURNING program"
        }
        let released = try await st.query([.text(id)]) { _ in
            "UPDATE exchanger_deployments SET owner = NULL, lease_expires_at = NULL WHERE owner = $1 RETURNING id"
        }
        if !workers.isEmpty { try await st.tx.notify(workersNotification) }
        if !released.isEmpty { try await st.tx.notify(deploymentsNotification) }
    }

    /// Every supervisor row, live or not, by id.
    public func supervisors() async throws -> [SupervisorRecord] {
        try await transaction { st in
            try await st.query { t in "SELECT \(StoreSQL.supervisorColumns(t)) FROM exchanger_supervisors ORDER BY id" }
                .map(StoreSQL.supervisor)
        }
    }

    /// Worker rows as recorded (finished ones and those of dead supervisors included), of one
    /// supervisor or all.
    public func workers(supervisorID: String? = nil) async throws -> [WorkerRecord] {
        try await transaction { st in
            try await st.query([SQLValue(supervisorID)]) { t in
                """
                SELECT \(StoreSQL.workerColumns(t)) FROM exchanger_workers w
                WHERE \(t.nullableText(1)) IS NULL OR w.supervisor_id = $1
                ORDER BY w.supervisor_id, w.deployment_id, w.program, w.instance
                """
            }.map(StoreSQL.worker)
        }
    }

    // MARK: Deployments

    /// One reconciliation step of supervisor `supervisorID`, in one transaction: renews the leases
    /// of the deployments it owns (to `lease` from now), then claims unowned or lease-expired
    /// deployments that need an owner (desired state running, or workers still running), oldest
    /// first, until it owns its fair share: ⌈deployments needing an owner ÷ live supervisors⌉.
    /// Returns every deployment it owns now, stopped ones it still owns included, oldest first.
    ///
    /// A live lease is never taken. On PostgreSQL the candidates are locked with
    /// `FOR UPDATE SKIP LOCKED`, so concurrent claimers never take the same deployment; on SQLite
    /// write transactions are serialized. A supervisor with status `draining` only renews.
    /// Owned deployments above the share are kept (moving running workers costs more than an
    /// uneven split); the share evens out as deployments come and go.
    /// - Throws: ``DeploymentError/Code/leaseLost`` when the supervisor is not registered or its
    ///   lease expired (nothing is renewed then).
    public func claim(supervisorID: String, lease: Duration) async throws -> [Deployment] {
        try Validation.identifier(supervisorID, what: "supervisor id")
        try Validation.lease(lease)
        return try await transaction { st in
            let me = try await st.query([.text(supervisorID)]) { t in
                "SELECT status FROM exchanger_supervisors WHERE id = $1 AND lease_expires_at > \(t.now) \(t.lock("FOR SHARE"))"
            }
            guard let status = me.first?["status"].string else { throw Self.leaseLost(supervisorID) }
            try await st.query([.text(supervisorID), .integer(lease.milliseconds)]) { t in
                "UPDATE exchanger_deployments SET lease_expires_at = \(t.plus(2)) WHERE owner = $1"
            }
            if SupervisorStatus(rawValue: status) != .draining {
                let counts = try await st.query([.text(supervisorID)]) { t in
                    """
                    SELECT
                        (SELECT count(*) FROM exchanger_supervisors WHERE lease_expires_at > \(t.now)) AS supervisors,
                        (SELECT count(*) FROM exchanger_deployments d WHERE \(StoreSQL.needsOwner(t))) AS needing,
                        (SELECT count(*) FROM exchanger_deployments d WHERE d.owner = $1 AND \(StoreSQL.needsOwner(t))) AS mine
                    """
                }.first
                let supervisors = max(1, counts?["supervisors"].int ?? 1)
                let needing = counts?["needing"].int ?? 0
                let mine = counts?["mine"].int ?? 0
                let share = (needing + supervisors - 1) / supervisors
                if share > mine {
                    try await st.query([.text(supervisorID), .integer(lease.milliseconds), SQLValue(share - mine)]) { t in
                        """
                        WITH candidates AS MATERIALIZED (
                            SELECT d.id FROM exchanger_deployments d
                            WHERE (d.owner IS NULL OR d.lease_expires_at IS NULL OR d.lease_expires_at <= \(t.now))
                              AND \(StoreSQL.needsOwner(t))
                            ORDER BY d.created_at, d.id
                            LIMIT $3
                            \(t.lock("FOR UPDATE OF d SKIP LOCKED"))
                        )
                        UPDATE exchanger_deployments SET owner = $1, lease_expires_at = \(t.plus(2))
                        WHERE id IN (SELECT id FROM candidates)
                        """
                    }
                }
            }
            return try await st.query([.text(supervisorID)]) { t in
                "SELECT \(StoreSQL.deploymentColumns(t)) FROM exchanger_deployments WHERE owner = $1 ORDER BY created_at, id"
            }.map(StoreSQL.deployment)
        }
    }

    /// Gives up ownership of a deployment (after a stopped deployment's workers are gone, or to
    /// hand it to another supervisor). Returns false when `supervisorID` did not own it.
    @discardableResult
    public func release(deploymentID: String, supervisorID: String) async throws -> Bool {
        try Validation.identifier(deploymentID, what: "deployment id")
        try Validation.identifier(supervisorID, what: "supervisor id")
        return try await transaction { st in
            let released = try await st.query([.text(deploymentID), .text(supervisorID)]) { _ in
                "UPDATE exchanger_deployments SET owner = NULL, lease_expires_at = NULL WHERE id = $1 AND owner = $2 RETURNING id"
            }
            guard !released.isEmpty else { return false }
            try await st.tx.notify(Self.deploymentsNotification)
            return true
        }
    }

    /// Records what supervisor `supervisorID` runs, in one transaction: its worker rows become
    /// exactly `workers` (rows whose values did not change are left alone), and the target and
    /// running counts of the given deployments it owns are updated. Returns the ids among
    /// `deployments` it does not own (any more): it should stop their workers.
    /// - Throws: ``DeploymentError/Code/leaseLost`` when its lease expired or it is not
    ///   registered; nothing is written then. ``DeploymentError/Code/invalidArgument`` for a worker
    ///   of another supervisor, two workers with the same (program, deployment, instance), or
    ///   negative counts.
    @discardableResult
    public func report(supervisorID: String, deployments: [DeploymentCounts], workers: [WorkerRecord]) async throws -> [String] {
        try Validation.identifier(supervisorID, what: "supervisor id")
        var reported = Set<WorkerRecord.Key>()
        for worker in workers {
            try worker.validate(supervisorID: supervisorID)
            guard reported.insert(worker.key).inserted else {
                throw DeploymentError(.invalidArgument,
                    "worker \(worker.program)#\(worker.instance) of deployment '\(worker.deploymentID ?? "")' is listed twice")
            }
        }
        var ids = Set<String>()
        for counts in deployments {
            try Validation.identifier(counts.id, what: "deployment id")
            guard counts.targetProcs >= 0, counts.runningProcs >= 0 else {
                throw DeploymentError(.invalidArgument, "deployment '\(counts.id)': counts must not be negative")
            }
            guard ids.insert(counts.id).inserted else {
                throw DeploymentError(.invalidArgument, "deployment '\(counts.id)' is listed twice")
            }
        }
        let keys = reported
        return try await transaction { st in
            let me = try await st.query([.text(supervisorID)]) { t in
                "SELECT 1 FROM exchanger_supervisors WHERE id = $1 AND lease_expires_at > \(t.now) \(t.lock("FOR SHARE"))"
            }
            guard !me.isEmpty else { throw Self.leaseLost(supervisorID) }

            var notOwned: [String] = []
            for counts in deployments.sorted(by: { $0.id < $1.id }) {
                let updated = try await st.query([
                    .text(counts.id), .text(supervisorID), SQLValue(counts.targetProcs), SQLValue(counts.runningProcs),
                ]) { _ in
                    "UPDATE exchanger_deployments SET target_procs = $3, running_procs = $4 WHERE id = $1 AND owner = $2 RETURNING id"
                }
                if updated.isEmpty { notOwned.append(counts.id) }
            }

            var changed = 0
            let existing = try await st.query([.text(supervisorID)]) { _ in
                "SELECT program, deployment_id, instance FROM exchanger_workers WHERE supervisor_id = $1"
            }
            for row in existing {
                guard let program = row["program"].string, let deployment = row["deployment_id"].string,
                    let instance = row["instance"].int
                else { continue }
                let key = WorkerRecord.Key(program: program, deploymentID: deployment, instance: instance)
                if keys.contains(key) { continue }
                try await st.query([.text(supervisorID), .text(program), .text(deployment), SQLValue(instance)]) { _ in
                    "DELETE FROM exchanger_workers WHERE supervisor_id = $1 AND program = $2 AND deployment_id = $3 AND instance = $4"
                }
                changed += 1
            }
            for worker in workers {
                // A pass computed before the orchestrator removed a deployment must not record its
                // workers again after the removal (the exchange would show a worker left behind).
                // The share lock makes a concurrent removal wait for this report, whose live worker
                // it then refuses, or this report wait for the removal, after which the row is gone.
                if let deployment = worker.deploymentID, !deployment.isEmpty {
                    let present = try await st.query([.text(deployment)]) { t in
                        "SELECT 1 FROM exchanger_deployments WHERE id = $1 \(t.lock("FOR SHARE"))"
                    }
                    if present.isEmpty {
                        let deleted = try await st.query([
                            .text(supervisorID), .text(worker.program), .text(deployment), SQLValue(worker.instance),
                        ]) { _ in
                            """
                            DELETE FROM exchanger_workers WHERE supervisor_id = $1 AND program = $2 AND deployment_id = $3 AND instance = $4
                            RETURNING 1 AS deleted
                            """
                        }
                        changed += deleted.count
                        continue
                    }
                }
                let rows = try await st.query([
                    .text(supervisorID), .text(worker.program), SQLValue(worker.instance), .text(worker.deploymentID ?? ""),
                    SQLValue(worker.pid.map(Int.init)), .text(worker.state.rawValue),
                    worker.startedAt.map { .integer(StoreSQL.milliseconds($0)) } ?? .null, SQLValue(worker.restarts),
                    SQLValue(worker.lastExitStatus.map(Int.init)),
                ]) { t in
                    """
                    INSERT INTO exchanger_workers (supervisor_id, program, instance, deployment_id, pid, state, started_at, restarts,
                        last_exit_status, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, \(t.time(7)), $8, $9, \(t.now))
                    ON CONFLICT (supervisor_id, program, deployment_id, instance) DO UPDATE
                    SET pid = excluded.pid, state = excluded.state, started_at = excluded.started_at, restarts = excluded.restarts,
                        last_exit_status = excluded.last_exit_status, updated_at = excluded.updated_at
                    WHERE exchanger_workers.pid \(t.distinct) excluded.pid OR exchanger_workers.state \(t.distinct) excluded.state
                       OR exchanger_workers.started_at \(t.distinct) excluded.started_at
                       OR exchanger_workers.restarts \(t.distinct) excluded.restarts
                       OR exchanger_workers.last_exit_status \(t.distinct) excluded.last_exit_status
                    RETURNING 1 AS written
                    """
                }
                changed += rows.count
            }
            if changed > 0 { try await st.tx.notify(Self.workersNotification) }
            return notOwned
        }
    }

    static func leaseLost(_ id: String) -> DeploymentError {
        DeploymentError(.leaseLost, "supervisor '\(id)' is not registered or its lease expired; register again")
    }
}
