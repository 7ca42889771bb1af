import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Finds and kills processes an earlier run of a supervisor left behind.
///
/// A supervisor's own children die with it (parent-death signal), but a child's descendants do
/// not, and once the supervisor is gone nobody kills their process group. Every supervised
/// process inherits `EXCHANGER_SUPERVISOR_ID`, `EXCHANGER_SUPERVISOR_RUN` and
/// `EXCHANGER_SUPERVISOR_PID`; at start a supervisor SIGKILLs every process of this user that
/// carries its identifier, another run id, and a supervisor pid that is no longer alive.
enum OrphanSweep {
    /// Returns the pids killed.
    static func run(identifier: String, currentRun: String) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        let me = getpid()
        var killed: [Int32] = []
        for entry in entries {
            guard let pid = Int32(entry), pid != me, pid > 1 else { continue }
            guard let environment = readEnvironment(pid) else { continue }
            guard environment["EXCHANGER_SUPERVISOR_ID"] == identifier,
                  let run = environment["EXCHANGER_SUPERVISOR_RUN"], run != currentRun
            else { continue }
            if let owner = environment["EXCHANGER_SUPERVISOR_PID"].flatMap(Int32.init), owner != me, isAlive(owner, run: run) { continue }
            if kill(pid, SIGKILL) == 0 { killed.append(pid) }
        }
        return killed.sorted()
    }

    /// Whether `pid` is still the supervisor of `run` (a recycled pid is not).
    private static func isAlive(_ pid: Int32, run: String) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        // A live supervisor does not carry its own run id in its environment; a recycled pid may
        // belong to anything. Treat the owner as alive only if it is a supervisor process.
        guard let command = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { return false }
        return command.contains("exchanger-supervisor") || command.contains("exchanger")
    }

    private static func readEnvironment(_ pid: Int32) -> [String: String]? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ"), !data.isEmpty else { return nil }
        var result: [String: String] = [:]
        for entry in data.split(separator: 0) {
            guard let equals = entry.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let key = String(decoding: entry[entry.startIndex..<equals], as: UTF8.self)
            guard key.hasPrefix("EXCHANGER_SUPERVISOR_") else { continue }
            result[key] = String(decoding: entry[(equals + 1)...], as: UTF8.self)
        }
        return result
    }
}
