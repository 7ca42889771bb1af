import ArgumentParser
import Deployments
import Foundation

/// `exchanger scale JOB_ID PROGRAM --min N --max M`: changes the process bounds of one program of a
/// running exchange (its deployment row); the owning supervisor applies them on its next pass.
struct ScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Change how many workers of a program a running exchange may have.",
        discussion: """
            Sets the deployment's min_procs and max_procs; the supervisor that owns it applies them on \
            its next reconcile pass. The program's min_procs / max_procs in supervisor.conf still bound \
            it (the tighter bound wins), so `exchanger ps --config supervisor.conf` shows both. A \
            deployment whose exchange is being torn down is not started again. Exit status: 0 when \
            changed, 1 when the exchange has no such running deployment, 64 for bad bounds.
            """)

    @OptionGroup var options: DatabaseOptions
    @Argument(help: "The exchange's job id.") var jobID: String
    @Argument(help: "The program: s3-copy, pre-uploader, uploader, re-ocr or search-text.") var program: String
    @Option(help: "Fewest workers (default: unchanged).") var min: Int?
    @Option(help: "Most workers (default: unchanged).") var max: Int?

    func validate() throws {
        if min == nil && max == nil { throw ValidationError("give --min, --max or both") }
        if let min, min < 0 { throw ValidationError("--min must be 0 or more") }
        if let min, let max, max < min { throw ValidationError("--max must not be less than --min") }
        if let max, max > DeploymentSpec.maxProcsLimit { throw ValidationError("--max must be at most \(DeploymentSpec.maxProcsLimit)") }
    }

    func run() async throws {
        let broker = try await options.connect()
        defer { Task { await broker.close() } }
        let store = DeploymentStore(broker: broker)
        let deployments = try await store.deployments(exchangeID: jobID)
        guard let deployment = deployments.first(where: { $0.program == program }) else {
            let known = deployments.map(\.program).sorted().joined(separator: ", ")
            FileHandle.standardError.write(Data(
                "exchanger scale: exchange \(jobID) has no deployment of program '\(program)'\(known.isEmpty ? " (it has none: ended, or not provisioned yet)" : "; it has: \(known)")\n".utf8))
            throw ExitCode(1)
        }
        let newMin = min ?? Swift.min(deployment.minProcs, max ?? deployment.minProcs)
        let newMax = max ?? Swift.max(deployment.maxProcs, newMin)
        do {
            guard let changed = try await store.setBounds(id: deployment.id, minProcs: newMin, maxProcs: newMax) else {
                FileHandle.standardError.write(Data("exchanger scale: deployment \(deployment.id) is stopped: its exchange is being torn down\n".utf8))
                throw ExitCode(1)
            }
            print("\(changed.id): \(program) \(deployment.minProcs)-\(deployment.maxProcs) -> \(changed.minProcs)-\(changed.maxProcs) (owner \(changed.owner ?? "none yet"); supervisor.conf's bounds still apply)")
        } catch let error as DeploymentError where error.code == .invalidArgument {
            FileHandle.standardError.write(Data("exchanger scale: \(error.message)\n".utf8))
            throw ExitCode(64)
        }
    }
}
