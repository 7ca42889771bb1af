import Deployments
import ExchangeFleet
import ExchangerTestSupport
import Foundation
import ProcessSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A per-exchange worker that cannot start (its configuration is incomplete: it exits 78 at
/// start) is visible: FAILED in `exchanger ps`, named in the exchange's status; nothing is
/// dead-lettered, and the exchange can still be cancelled cleanly.
@Suite("A worker that cannot start")
struct MisconfiguredWorkerTests {
    @Test("pre-uploader without qpdf: it crash-loops (exit 78), `exchanger ps` shows it FAILED, the exchange's error names it and the cause, no document is dead-lettered; a cancel still tears everything down")
    func crashLoopingWorkerIsNamed() async throws {
        try await FleetFixture.with(.postgres) { fixture in
            let demo = try await fixture.seed(documents: 2, annotations: true)
            _ = try fixture.workspace.writeAPIToken()
            var workspace = fixture.workspace
            workspace.extraEnvironment["EXCHANGER_QPDF_PATH"] = "/nonexistent/qpdf"
            let broken = FleetFixture(workspace: workspace, databases: fixture.databases, logger: fixture.logger)
            try await broken.withFleetAndOrchestrator(replica: "misconfigured") { client in
                let submitted = try await client.submit(demo.requestJSON(includeNatives: false, requiresAnnotations: true))
                // Five quick deaths (backoff 1, 2, 4, 8 s) make the slot FAILED; the next check names it.
                var last: ExchangeStatus?
                let named = try await eventually(timeout: .seconds(90)) {
                    last = try await client.status(submitted.jobId)
                    return last?.error?.contains("pre-uploader cannot start") == true
                }
                #expect(named, "\(String(describing: last))")
                #expect(last?.state == "PROCESSING")
                #expect(last?.error?.contains("exit status 78") == true, "\(last?.error ?? "")")
                let (psStatus, ps) = try await runExchanger(["ps"], environment: workspace.processEnvironment)
                #expect(psStatus == 0)
                #expect(ps.split(separator: "\n").contains { $0.contains("pre-uploader") && $0.contains("FAILED") }, "\(ps)")
                #expect(try await fixture.eventCount("PRE_UPLOADER_FINISHED", jobID: submitted.jobId) == 0, "nothing dead-lettered")

                let cancelled = try await client.cancel(submitted.jobId)
                #expect(cancelled.state == "TEARING_DOWN" || cancelled.state == "CANCELLED")
                let final = try await client.watch(submitted.jobId, timeout: .seconds(90)) { _ in }
                #expect(final.state == "CANCELLED")
                #expect(try await fixture.leftovers(submitted.jobId).isEmpty)
            }
        }
    }
}
