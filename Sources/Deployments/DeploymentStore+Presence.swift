import Broker
import DatabaseSupport
import Foundation

extension DeploymentStore {
    // MARK: Worker presence

    /// Announces (or re-announces) a worker process for `ttl`; also removes rows that expired more
    /// than `forgetAfter` ago, so vanished processes do not pile up.
    public func announce(_ presence: WorkerPresence, ttl: Duration, forgetAfter: Duration = .seconds(3600)) async throws {
        try Validation.identifier(presence.id, what: "presence id")
        try Validation.identifier(presence.program, what: "program")
        try Validation.lease(ttl)
        try await transaction { st in
            try await st.query([
                .text(presence.id), .text(presence.hostname), SQLValue(Int(presence.pid)), .integer(ttl.milliseconds),
                .text(presence.program), SQLValue(presence.queue), SQLValue(presence.supervisorID), SQLValue(presence.deploymentID),
            ]) { t in
                """
                INSERT INTO exchanger_worker_presence
                    (id, hostname, pid, program, queue, supervisor_id, deployment_id, started_at, heartbeat_at, expires_at)
                VALUES ($1, $2, $3, $5, \(t.nullableText(6)), \(t.nullableText(7)), \(t.nullableText(8)), \(t.now), \(t.now), \(t.plus(4)))
                ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at
                """
            }
            try await st.query([.integer(forgetAfter.milliseconds)]) { t in
                "DELETE FROM exchanger_worker_presence WHERE expires_at < \(t.minus(1))"
            }
        }
    }

    /// Renews a worker's row for `ttl`; false when the row is gone (it was forgotten, or the
    /// database was restored): the caller announces again.
    public func renewPresence(id: String, ttl: Duration) async throws -> Bool {
        try Validation.identifier(id, what: "presence id")
        try Validation.lease(ttl)
        return try await transaction { st in
            try await st.query([.text(id), .integer(ttl.milliseconds)]) { t in
                """
                UPDATE exchanger_worker_presence SET heartbeat_at = \(t.now), expires_at = \(t.plus(2))
                WHERE id = $1 RETURNING id
                """
            }.isEmpty == false
        }
    }

    /// Removes a worker's row (it exits).
    public func withdrawPresence(id: String) async throws {
        try await transaction { st in
            _ = try await st.query([.text(id)]) { _ in "DELETE FROM exchanger_worker_presence WHERE id = $1" }
        }
    }

    /// The announced worker processes, by program, host and pid; with `includeStale`, also those
    /// whose row expired (``WorkerPresence/isLive`` false).
    /// Forgets the expired rows of a supervisor's workers whose process is gone (killed, crashed,
    /// fenced while cut off: they could not withdraw their row): every expired row of
    /// `supervisorID` whose pid is not in `runningPIDs`. Returns how many.
    @discardableResult
    public func forgetStalePresences(supervisorID: String, runningPIDs: [Int32]) async throws -> Int {
        let keep = runningPIDs.isEmpty ? "" : " AND pid NOT IN (\(runningPIDs.map(String.init).joined(separator: ", ")))"
        return try await transaction { st in
            try await st.query([.text(supervisorID)]) { t in
                "DELETE FROM exchanger_worker_presence WHERE supervisor_id = $1 AND expires_at <= \(t.now)\(keep) RETURNING id"
            }.count
        }
    }

    public func presences(includeStale: Bool = false) async throws -> [WorkerPresence] {
        try await transaction { st in
            try await st.query([SQLValue(includeStale)]) { t in
                """
                SELECT id, hostname, pid, program, queue, supervisor_id, deployment_id, \(t.milliseconds("started_at")) AS started_ms,
                    \(t.milliseconds("heartbeat_at")) AS heartbeat_ms, \(t.milliseconds("expires_at")) AS expires_ms,
                    (expires_at > \(t.now)) AS live
                FROM exchanger_worker_presence
                WHERE \(t.bool(1)) OR expires_at > \(t.now)
                ORDER BY program, hostname, pid, id
                """
            }.map { row in
                WorkerPresence(
                    id: try row.require("id") { $0.string }, hostname: row["hostname"].string ?? "",
                    pid: Int32(truncatingIfNeeded: row["pid"].int64 ?? 0), program: try row.require("program") { $0.string },
                    queue: row["queue"].string, supervisorID: row["supervisor_id"].string, deploymentID: row["deployment_id"].string,
                    startedAt: StoreSQL.date(row["started_ms"]) ?? Date(timeIntervalSince1970: 0),
                    heartbeatAt: StoreSQL.date(row["heartbeat_ms"]) ?? Date(timeIntervalSince1970: 0),
                    expiresAt: StoreSQL.date(row["expires_ms"]) ?? Date(timeIntervalSince1970: 0), isLive: row["live"].bool ?? false)
            }
        }
    }
}
