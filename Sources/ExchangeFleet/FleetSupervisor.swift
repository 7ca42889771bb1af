import Foundation
import Logging
import ConcurrencySupport
import ProcessSupport
#if canImport(Glibc)
import Glibc
#endif

/// The `exchanger-supervisor` of a local run, started as a child of this process with the
/// workspace's generated configuration. It starts the orchestrator, the global processors and,
/// for each exchange, the workers the orchestrator's deployments ask for. Every JSON log line of
/// the fleet is appended to the workspace's `logs/fleet.log`.
public final class FleetSupervisor: Sendable {
    /// The supervisor's process id.
    public var pid: pid_t { process.pid }
    private let process: ChildProcess
    private let pump: Task<Void, Never>
    private let waiter: Task<Int32?, Never>
    private let exitStatus: LockedBox<Int32?>

    private init(process: ChildProcess, pump: Task<Void, Never>) {
        self.process = process
        self.pump = pump
        let exitStatus = LockedBox<Int32?>(nil)
        self.exitStatus = exitStatus
        waiter = Task {
            let status = try? await process.wait()
            exitStatus.withLock { $0 = status ?? -1 }
            return status
        }
    }

    /// The directory holding the fleet's executables: the directory of this executable when every
    /// one of them is there, else nil (they are then looked up on `PATH`).
    public static func executableDirectory(required: [String] = FleetConfiguration.executables) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        let path = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let directory = (path as NSString).deletingLastPathComponent
        let allThere = required.allSatisfy { access(directory + "/" + $0, X_OK) == 0 }
        return allThere ? directory : nil
    }

    /// The absolute path of `name`: next to this executable, else the first match on `PATH`.
    /// - Throws: ``FleetError/Code/executableNotFound``.
    public static func locate(_ name: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        if let directory = executableDirectory(required: [name]) { return directory + "/" + name }
        for directory in (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw FleetError(.executableNotFound,
            "\(name) is neither next to this executable nor on PATH (build every product: swift build --product \(name), or swift build)")
    }

    /// Writes the configuration into the workspace and starts the supervisor on it.
    /// - Parameters:
    ///   - lineHandler: sees every log line as well (for `--verbose`), after it is written to the log.
    public static func start(
        workspace: FleetWorkspace, configuration: FleetConfiguration, logger: Logger,
        lineHandler: (@Sendable (String) -> Void)? = nil
    ) throws -> FleetSupervisor {
        for executable in FleetConfiguration.executables { _ = try locate(executable) }
        let supervisor = try locate("exchanger-supervisor")
        do {
            try configuration.render().write(toFile: workspace.supervisorConfigurationPath, atomically: true, encoding: .utf8)
        } catch {
            throw FleetError(.workspace, "cannot write \(workspace.supervisorConfigurationPath): \(error)")
        }
        guard FileManager.default.createFile(atPath: workspace.fleetLogPath, contents: nil)
            || FileManager.default.fileExists(atPath: workspace.fleetLogPath),
            let log = FileHandle(forWritingAtPath: workspace.fleetLogPath)
        else { throw FleetError(.workspace, "cannot open \(workspace.fleetLogPath)") }
        log.seekToEndOfFile()

        var environment = workspace.processEnvironment
        // The supervisor finds its programs next to itself; keep PATH for anything else.
        environment["EXCHANGER_SUPERVISOR_CONFIG"] = workspace.supervisorConfigurationPath
        let process: ChildProcess
        do {
            process = try ChildProcess(
                executable: supervisor, arguments: ["--config", workspace.supervisorConfigurationPath, "--stop-when-orphaned"],
                environment: environment, stdout: .pipe, stderr: .inherit)
        } catch {
            try? log.close()
            throw FleetError(.supervisor, "cannot start \(supervisor): \(error)")
        }
        let lines = process.lines()
        let pump = Task {
            do {
                for try await line in lines {
                    log.write(Data((line + "\n").utf8))
                    lineHandler?(line)
                }
            } catch {
                logger.warning("reading the supervisor's output failed", metadata: ["error": "\(error)"])
            }
            try? log.close()
        }
        logger.debug("supervisor started", metadata: ["pid": "\(process.pid)", "config": "\(workspace.supervisorConfigurationPath)"])
        return FleetSupervisor(process: process, pump: pump)
    }

    /// The supervisor's exit status once it has exited, else nil.
    public var exited: Int32? { exitStatus.withLock { $0 } }

    /// Stops the fleet: SIGTERM to the supervisor (it stops its programs by priority and
    /// deregisters), SIGKILL to its process group after `timeout`. Returns its exit status.
    /// Runs to the end even when the calling task is cancelled (an interrupted run still stops its fleet).
    @discardableResult
    public func stop(timeout: Duration = .seconds(60)) async -> Int32? {
        await Task { await self.stopFleet(timeout: timeout) }.value
    }

    private func stopFleet(timeout: Duration) async -> Int32? {
        if let status = exited {
            await pump.value
            return status
        }
        process.signal(SIGTERM)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = await Self.poll(waiter, for: .milliseconds(100)) {
                await pump.value
                return status
            }
        }
        process.signal(SIGKILL, group: true)
        let status = await waiter.value
        await pump.value
        return status
    }

    /// Waits for the supervisor to exit on its own and returns its status.
    public func wait() async -> Int32? {
        let status = await waiter.value
        await pump.value
        return status
    }

    private static func poll(_ task: Task<Int32?, Never>, for duration: Duration) async -> Int32?? {
        await withTaskGroup(of: Int32??.self) { group in
            group.addTask { .some(await task.value) }
            group.addTask {
                try? await Task.sleep(for: duration)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}
