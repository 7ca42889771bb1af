import OrchestratorService

/// Entry point of `exchanger-orchestrator`; everything lives in the OrchestratorService library.
@main
enum OrchestratorMain {
    static func main() async {
        await OrchestratorCommand.main(nil)
    }
}
