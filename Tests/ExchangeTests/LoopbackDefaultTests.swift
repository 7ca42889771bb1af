import ExchangeFleet
import ExchangerTestSupport
import Foundation
import ProcessSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Listeners bind to loopback unless told otherwise: the orchestrator's API and a worker's metrics
/// endpoint, as the kernel lists them.
@Suite("Loopback by default")
struct LoopbackDefaultTests {
    /// The local addresses (kernel hex, e.g. `0100007F` for 127.0.0.1) listening on `port`, IPv4 and IPv6.
    static func listeners(port: Int) -> [String] {
        var addresses: [String] = []
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 3, fields[3] == "0A" else { continue }  // LISTEN
                let local = fields[1].split(separator: ":")
                guard local.count == 2, Int(local[1], radix: 16) == port else { continue }
                addresses.append(String(local[0]))
            }
        }
        return addresses
    }

    static func waitForListener(port: Int) async throws -> [String] {
        _ = await eventually(timeout: .seconds(30)) { !listeners(port: port).isEmpty }
        return listeners(port: port)
    }

    @Test("the orchestrator without --host and EXCHANGER_ORCHESTRATOR_HOST listens on 127.0.0.1 only")
    func orchestratorListensOnLoopback() async throws {
        try await withTestBroker(.sqlite) { _, url in
            let port = try LocalExchangeRun.freePort()
            let child = try ChildProcess(
                executable: TestEnvironment.executable("exchanger-orchestrator"), arguments: ["--insecure-no-auth"],
                environment: [
                    "EXCHANGER_DATABASE_URL": url, "EXCHANGER_ORCHESTRATOR_PORT": String(port), "EXCHANGER_ORCHESTRATOR_HOST": "",
                    "EXCHANGER_CASE_DATABASE_URL": "sqlite:///tmp/none/{database}.sqlite",
                ], stdout: .discard)
            let addresses = try await Self.waitForListener(port: port)
            child.signal(SIGTERM)
            _ = try await child.wait()
            #expect(addresses == ["0100007F"], "listening on \(addresses)")
        }
    }

    @Test("a worker's metrics endpoint without EXCHANGER_METRICS_HOST listens on 127.0.0.1 only")
    func workerMetricsListenOnLoopback() async throws {
        try await withTestBroker(.sqlite) { broker, url in
            try await broker.createQueue("lb")
            let port = try LocalExchangeRun.freePort()
            let child = try ChildProcess(
                executable: TestEnvironment.executable("exchanger-status-update"), arguments: ["--queue", "lb"],
                environment: [
                    "EXCHANGER_DATABASE_URL": url, "EXCHANGER_METRICS_PORT": String(port), "EXCHANGER_METRICS_HOST": "",
                    "EXCHANGER_CASE_DATABASE_URL": "sqlite:///tmp/none/{database}.sqlite", "EXCHANGER_WORKER_PRESENCE_SECONDS": "0",
                ], stdout: .discard)
            let addresses = try await Self.waitForListener(port: port)
            child.signal(SIGTERM)
            _ = try await child.wait()
            #expect(addresses == ["0100007F"], "listening on \(addresses)")
        }
    }
}
