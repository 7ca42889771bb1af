import Broker
import DatabaseSupport
import Foundation

/// A broker transaction with the store's statement conventions.
struct StoreTransaction: Sendable {
    let tx: BrokerTransaction
    /// SQLite's clock for this transaction, in milliseconds since 1970.
    let clock: Int64

    var dialect: SQLDialect { tx.dialect }

    /// Runs the statement `sql` builds, with `binds` for `$1…$n`.
    @discardableResult
    func query(_ binds: [SQLValue] = [], _ sql: (SQLTime) -> String) async throws -> [SQLRow] {
        try await tx.query(clock: clock, binds, sql)
    }

    /// `$1` → `?1` for SQLite.
    static func placeholders(_ sql: String, _ dialect: SQLDialect) -> String {
        dialect.placeholders(sql)
    }
}

/// Column lists, conditions and row decoding shared by the store's statements.
enum StoreSQL {
    static func deploymentColumns(_ t: SQLTime, _ table: String = "") -> String {
        let p = table.isEmpty ? "" : table + "."
        return """
            \(p)id, \(p)exchange_id, \(p)program, \(p)queue, \(p)min_procs, \(p)max_procs, \(p)messages_per_proc, \(p)desired_state,
            \(p)owner, \(t.milliseconds(p + "lease_expires_at")) AS lease_expires_ms, \(p)target_procs, \(p)running_procs,
            \(t.milliseconds(p + "created_at")) AS created_ms, \(t.milliseconds(p + "updated_at")) AS updated_ms
            """
    }

    static func workerColumns(_ t: SQLTime, _ table: String = "w") -> String {
        let p = table.isEmpty ? "" : table + "."
        return """
            \(p)supervisor_id, \(p)program, \(p)instance, \(p)deployment_id, \(p)pid, \(p)state,
            \(t.milliseconds(p + "started_at")) AS started_ms, \(p)restarts, \(p)last_exit_status,
            \(t.milliseconds(p + "updated_at")) AS updated_ms
            """
    }

    static func supervisorColumns(_ t: SQLTime) -> String {
        """
        id, hostname, pid, \(t.milliseconds("started_at")) AS started_ms, \(t.milliseconds("heartbeat_at")) AS heartbeat_ms,
        \(t.milliseconds("lease_expires_at")) AS lease_expires_ms, http_port, status, (lease_expires_at > \(t.now)) AS live
        """
    }

    /// The finished worker states as an SQL list (constants, not values).
    static let finishedStates = WorkerState.finished.map { "'\($0.rawValue)'" }.sorted().joined(separator: ", ")

    /// Worker row `w` is live: its supervisor's lease has not expired and its state is not finished.
    static func liveWorker(_ t: SQLTime, _ w: String = "w") -> String {
        """
        \(w).state NOT IN (\(finishedStates)) AND EXISTS (
            SELECT 1 FROM exchanger_supervisors s WHERE s.id = \(w).supervisor_id AND s.lease_expires_at > \(t.now))
        """
    }

    /// Deployment row `d` needs an owner: it should run, or something of it still runs.
    static func needsOwner(_ t: SQLTime, _ d: String = "d") -> String {
        """
        (\(d).desired_state = 'running' OR \(d).running_procs > 0 OR EXISTS (
            SELECT 1 FROM exchanger_workers w WHERE w.deployment_id = \(d).id AND \(liveWorker(t, "w"))))
        """
    }

    // MARK: Rows

    static func deployment(_ row: SQLRow) throws -> Deployment {
        do {
            let state = try row.require("desired_state") { $0.string }
            guard let desired = DesiredState(rawValue: state) else {
                throw DeploymentError(.corruptRecord, "deployment \(row["id"]): unknown desired state '\(state)'")
            }
            return Deployment(
                id: try row.require("id") { $0.string }, exchangeID: try row.require("exchange_id") { $0.string },
                program: try row.require("program") { $0.string }, queue: try row.require("queue") { $0.string },
                minProcs: try row.require("min_procs") { $0.int }, maxProcs: try row.require("max_procs") { $0.int },
                messagesPerProc: row["messages_per_proc"].int, desiredState: desired, owner: row["owner"].string,
                leaseExpiresAt: date(row["lease_expires_ms"]), targetProcs: row["target_procs"].int ?? 0,
                runningProcs: row["running_procs"].int ?? 0, createdAt: try row.require("created_ms") { date($0) },
                updatedAt: try row.require("updated_ms") { date($0) })
        } catch let error as DatabaseError {
            throw DeploymentError(.corruptRecord, "deployment \(row["id"]): \(error.message)")
        }
    }

    static func worker(_ row: SQLRow) throws -> WorkerRecord {
        do {
            let deployment = try row.require("deployment_id") { $0.string }
            return WorkerRecord(
                supervisorID: try row.require("supervisor_id") { $0.string }, program: try row.require("program") { $0.string },
                instance: try row.require("instance") { $0.int }, deploymentID: deployment.isEmpty ? nil : deployment,
                pid: row["pid"].int64.flatMap { Int32(exactly: $0) }, state: WorkerState(rawValue: try row.require("state") { $0.string }),
                startedAt: date(row["started_ms"]), restarts: row["restarts"].int ?? 0,
                lastExitStatus: row["last_exit_status"].int64.flatMap { Int32(exactly: $0) }, updatedAt: date(row["updated_ms"]))
        } catch {
            throw DeploymentError(.corruptRecord, "worker of supervisor \(row["supervisor_id"]): \(error.message)")
        }
    }

    static func supervisor(_ row: SQLRow) throws -> SupervisorRecord {
        do {
            return SupervisorRecord(
                id: try row.require("id") { $0.string }, hostname: row["hostname"].string ?? "",
                pid: try row.require("pid") { $0.int64.flatMap { Int32(exactly: $0) } },
                startedAt: try row.require("started_ms") { date($0) }, heartbeatAt: try row.require("heartbeat_ms") { date($0) },
                leaseExpiresAt: try row.require("lease_expires_ms") { date($0) }, httpPort: row["http_port"].int,
                status: SupervisorStatus(rawValue: row["status"].string ?? ""), isLive: row["live"].bool ?? false)
        } catch {
            throw DeploymentError(.corruptRecord, "supervisor \(row["id"]): \(error.message)")
        }
    }

    static func date(_ value: SQLValue) -> Date? {
        value.int64.map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    static func milliseconds(_ duration: Duration) -> Int64 { duration.milliseconds }
}
