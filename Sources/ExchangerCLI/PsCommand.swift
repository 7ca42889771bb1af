import ArgumentParser
import Broker
import Deployments
import Foundation
import Supervisor

/// `exchanger ps`: the supervisors sharing the broker, the per-exchange deployments, and the
/// worker processes each supervisor reported; optionally the programs of a `supervisor.conf`.
struct PsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps",
        abstract: "Show supervisors, deployments, workers and every running worker process recorded in the broker.",
        discussion: """
            WORKERS are what each supervisor last reported (every reconcile_interval); a supervisor \
            whose lease expired is shown as DEAD and its workers are not counted as running. PROCESSES \
            are the worker processes that announced themselves (every EXCHANGER_WORKER_PRESENCE_SECONDS), \
            supervised or not: replicas a container platform started appear there as "unbound". A process             whose presence expired (its host cut off from the database, or it died without withdrawing             its row) stays listed as "unreachable (presence expired at …)" until its supervisor forgets             it or an hour has passed.
            """
    )

    @OptionGroup var options: DatabaseOptions
    @Option(help: "Only this exchange's deployments and workers.") var exchange: String?
    @Option(help: "Also list the programs of this supervisor.conf.") var config: String?
    @Flag(help: "One JSON object instead of tables.") var json = false

    func run() async throws {
        let broker = try await options.connect()
        defer { Task { await broker.close() } }
        let store = DeploymentStore(broker: broker)
        let supervisors = try await store.supervisors()
        let deployments = try await store.deployments(exchangeID: exchange)
        var workers = try await store.workers()
        if exchange != nil {
            let ids = Set(deployments.map(\.id))
            workers = workers.filter { $0.deploymentID.map(ids.contains) ?? false }
        }
        let live = Set(supervisors.filter(\.isLive).map(\.id))
        let programs = try config.map { try SupervisorConfiguration.load(path: $0).programs } ?? []
        // Expired rows too: a worker whose host was cut off cannot renew its row, yet may still run.
        var processes = try await store.presences(includeStale: true)
        if exchange != nil {
            let ids = Set(deployments.map(\.id))
            processes = processes.filter { $0.deploymentID.map(ids.contains) ?? false }
        }

        if json {
            let object: [String: Any] = [
                "supervisors": supervisors.map { [
                    "id": $0.id, "hostname": $0.hostname, "pid": Int($0.pid), "status": $0.status.rawValue, "live": $0.isLive,
                    "heartbeatAt": Self.time($0.heartbeatAt), "leaseExpiresAt": Self.time($0.leaseExpiresAt),
                ] as [String: Any] },
                "deployments": deployments.map { [
                    "id": $0.id, "exchangeId": $0.exchangeID, "program": $0.program, "queue": $0.queue, "min": $0.minProcs,
                    "max": $0.maxProcs, "desiredState": $0.desiredState.rawValue, "owner": $0.owner ?? NSNull(),
                    "target": $0.targetProcs, "running": $0.runningProcs,
                ] as [String: Any] },
                "workers": workers.map { [
                    "supervisor": $0.supervisorID, "program": $0.program, "instance": $0.instance,
                    "deploymentId": $0.deploymentID ?? NSNull(), "pid": $0.pid.map { Int($0) } ?? NSNull(), "state": $0.state.rawValue,
                    "restarts": $0.restarts, "live": live.contains($0.supervisorID),
                ] as [String: Any] },
                "processes": processes.map { [
                    "id": $0.id, "hostname": $0.hostname, "pid": Int($0.pid), "program": $0.program, "queue": $0.queue ?? NSNull(),
                    "supervisor": $0.supervisorID ?? NSNull(), "deploymentId": $0.deploymentID ?? NSNull(),
                    "startedAt": Self.time($0.startedAt), "heartbeatAt": Self.time($0.heartbeatAt),
                    "expiresAt": Self.time($0.expiresAt), "live": $0.isLive,
                ] as [String: Any] },
                "programs": programs.map { ["name": $0.name, "scope": $0.scope.rawValue, "min": $0.minProcs, "max": $0.maxProcs, "command": $0.command] as [String: Any] },
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }

        if !programs.isEmpty {
            print("PROGRAMS")
            Self.table([["NAME", "SCOPE", "PROCS", "COMMAND"]] + programs.map {
                [$0.name, $0.scope.rawValue, "\($0.minProcs)-\($0.maxProcs)", $0.command]
            })
            print("")
        }
        print("SUPERVISORS")
        Self.table([["ID", "HOST", "PID", "STATUS", "HEARTBEAT"]] + supervisors.map {
            [$0.id, $0.hostname, "\($0.pid)", $0.isLive ? $0.status.rawValue.uppercased() : "DEAD", Self.time($0.heartbeatAt)]
        })
        print("")
        print("DEPLOYMENTS")
        Self.table([["ID", "EXCHANGE", "PROGRAM", "QUEUE", "MIN-MAX", "DESIRED", "OWNER", "TARGET", "RUNNING"]] + deployments.map {
            [$0.id, $0.exchangeID, $0.program, $0.queue, "\($0.minProcs)-\($0.maxProcs)", $0.desiredState.rawValue,
             $0.owner ?? "-", "\($0.targetProcs)", "\($0.runningProcs)"]
        })
        print("")
        print("WORKERS")
        Self.table([["SUPERVISOR", "PROGRAM", "INSTANCE", "DEPLOYMENT", "PID", "STATE", "RESTARTS"]] + workers.map {
            [$0.supervisorID + (live.contains($0.supervisorID) ? "" : " (dead)"), $0.program, "\($0.instance)", $0.deploymentID ?? "-",
             $0.pid.map { "\($0)" } ?? "-", $0.state.rawValue, "\($0.restarts)"]
        })
        print("")
        print("PROCESSES")
        Self.table([["PROGRAM", "HOST", "PID", "SUPERVISOR", "QUEUE", "STARTED", "HEARTBEAT", "STATE"]] + processes.map {
            [$0.program, $0.hostname, "\($0.pid)", $0.supervisorID ?? "unbound", $0.queue ?? "(program)", Self.time($0.startedAt),
             Self.time($0.heartbeatAt), $0.isLive ? "running" : "unreachable (presence expired at \(Self.time($0.expiresAt)))"]
        })
    }

    static func time(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false))
    }

    static func table(_ rows: [[String]]) {
        guard let header = rows.first else { return }
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) } }
        for row in rows {
            let cells = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }
            print(cells.joined(separator: "  "))
        }
    }
}
