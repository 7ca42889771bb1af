import AsyncHTTPClient
import ExchangerTestSupport
import Foundation
import NIOCore
import ProcessSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("exchanger-orchestrator process")
struct ProcessTests {
    @Test("starts with EXCHANGER_API_TOKENS, serves /healthz, accepts a POST, exits 0 on SIGTERM")
    func lifecycle() async throws {
        try await withTestDatabase(.postgres) { url in
            try await withTemporaryDirectory { directory in
                let child = try ChildProcess(
                    executable: TestEnvironment.executable("exchanger-orchestrator"),
                    arguments: ["--host", "127.0.0.1", "--port", "0", "--replica-id", "process-test"],
                    environment: [
                        "EXCHANGER_DATABASE_URL": url, "EXCHANGER_API_TOKENS": "first-token,second-token",
                        "EXCHANGER_CASE_DATABASE_URL": "sqlite://" + directory.path + "/{database}.sqlite",
                        "EXCHANGER_ORCHESTRATOR_COPY_RETRY_DELAY_SECONDS": "0.05", "EXCHANGER_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "5",
                    ])
                // The port comes from the "HTTP API listening" log line; the rest of the output is drained.
                let lines = child.lines()
                let portTask = Task { () -> Int? in
                    var port: Int?
                    for try await line in lines {
                        if port == nil, let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                            object["msg"] as? String == "HTTP API listening"
                        {
                            port = (object["port"] as? String).flatMap(Int.init)
                            return port
                        }
                    }
                    return port
                }
                let port = try await portTask.value
                let drain = Task { for try await _ in lines {} }
                guard let port else {
                    child.signal(SIGKILL)
                    _ = try await child.wait()
                    Issue.record("no 'HTTP API listening' line")
                    return
                }
                let base = "http://127.0.0.1:\(port)"
                let health = try await HTTPClient.shared.execute(HTTPClientRequest(url: base + "/healthz"), timeout: .seconds(10))
                #expect(health.status.code == 200)

                var post = HTTPClientRequest(url: base + "/exchanges")
                post.method = .POST
                post.headers.add(name: "Authorization", value: "Bearer second-token")
                post.headers.add(name: "Content-Type", value: "application/json")
                post.body = .bytes(ByteBuffer(string: #"{"sourceCaseId": 1, "destinationCaseId": 2, "batchId": 3, "labelId": 4}"#))
                let accepted = try await HTTPClient.shared.execute(post, timeout: .seconds(10))
                #expect(accepted.status.code == 202)
                let body = try await accepted.body.collect(upTo: 1 << 20)
                let jobID = (try? JSONSerialization.jsonObject(with: Data(String(buffer: body).utf8)) as? [String: Any])?["jobId"] as? String
                #expect(jobID != nil)

                var unauthorized = HTTPClientRequest(url: base + "/exchanges")
                unauthorized.headers.add(name: "Authorization", value: "Bearer third-token")
                #expect(try await HTTPClient.shared.execute(unauthorized, timeout: .seconds(10)).status.code == 401)

                child.signal(SIGTERM)
                let status = try await child.wait()
                #expect(status == 0)
                _ = try? await drain.value
            }
        }
    }

    @Test("SIGTERM during the case-data copy's retry backoff: exit 0 within seconds, not after the backoff or the grace")
    func sigtermInCopyBackoff() async throws {
        try await withTestDatabase(.postgres) { url in
            // Case databases on a port nothing listens on (connections refused): the copy fails
            // transiently and waits a minute before its retry; the grace is half a minute.
            let child = try ChildProcess(
                executable: TestEnvironment.executable("exchanger-orchestrator"),
                arguments: ["--host", "127.0.0.1", "--port", "0", "--replica-id", "backoff-test"],
                environment: [
                    "EXCHANGER_DATABASE_URL": url, "EXCHANGER_API_TOKENS": "backoff-token",
                    "EXCHANGER_CASE_DATABASE_URL": "postgres://postgres@127.0.0.1:1/{database}",
                    "EXCHANGER_ORCHESTRATOR_COPY_RETRIES": "5", "EXCHANGER_ORCHESTRATOR_COPY_RETRY_DELAY_SECONDS": "60",
                    "EXCHANGER_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "30", "EXCHANGER_ORCHESTRATOR_POLL_SECONDS": "0.05",
                ])
            struct Seen: Sendable {
                var port: Int?
                var copyFailures = 0
                var leaseGivenBack = false
                var stopped = false
            }
            let seen = Mutex(Seen())
            let lines = child.lines()
            let reader = Task {
                for try await line in lines {
                    guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
                    seen.withLock { seen in
                        switch object["msg"] as? String {
                        case "HTTP API listening": seen.port = (object["port"] as? String).flatMap(Int.init)
                        case "case-data copy failed": seen.copyFailures += 1
                        case "lease given back": seen.leaseGivenBack = true
                        case "orchestrator stopped": seen.stopped = true
                        default: break
                        }
                    }
                }
            }
            let listening = await eventually(timeout: .seconds(30)) { seen.withLock { $0.port != nil } }
            guard listening, let port = seen.withLock({ $0.port }) else {
                child.signal(SIGKILL)
                _ = try await child.wait()
                Issue.record("no 'HTTP API listening' line")
                return
            }
            var post = HTTPClientRequest(url: "http://127.0.0.1:\(port)/exchanges")
            post.method = .POST
            post.headers.add(name: "Authorization", value: "Bearer backoff-token")
            post.headers.add(name: "Content-Type", value: "application/json")
            post.body = .bytes(ByteBuffer(string: #"{"sourceCaseId": 1, "destinationCaseId": 2, "batchId": 3, "labelId": 4}"#))
            #expect(try await HTTPClient.shared.execute(post, timeout: .seconds(10)).status.code == 202)
            // The first attempt failed: the copy now waits 60 s for its retry.
            let failed = await eventually(timeout: .seconds(30)) { seen.withLock { $0.copyFailures >= 1 } }
            #expect(failed, "the copy did not fail")
            try await Task.sleep(for: .milliseconds(300))

            let clock = ContinuousClock()
            let signalled = clock.now
            child.signal(SIGTERM)
            let status = try await child.wait()
            let took = clock.now - signalled
            _ = try? await reader.value
            #expect(status == 0)
            #expect(took < .seconds(5), "exited \(took) after SIGTERM")
            let final = seen.withLock { $0 }
            #expect(final.copyFailures == 1, "the copy was retried: \(final.copyFailures) failures")
            #expect(final.leaseGivenBack && final.stopped)
        }
    }

    @Test("refuses to start without API tokens unless --insecure-no-auth")
    func refusesWithoutTokens() async throws {
        // Through a shell so standard error (where the refusal is printed) can be read.
        let child = try ChildProcess(
            executable: "/bin/sh", arguments: ["-c", #"exec "$0" --port 0 2>&1"#, TestEnvironment.executable("exchanger-orchestrator")],
            environment: ["EXCHANGER_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "EXCHANGER_API_TOKENS": "", "EXCHANGER_API_TOKENS_FILE": ""])
        let output = try await child.readAll()
        let status = try await child.wait()
        #expect(status != 0)
        #expect(output.contains("EXCHANGER_API_TOKENS"))
        #expect(output.contains("--insecure-no-auth"))
    }
}
