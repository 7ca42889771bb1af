import DeadLetterProcessor
import ExchangerCLI
import Foundation
import OrchestratorService
import PreUploaderProcessor
import ProcessSupport
import ReOCRProcessor
import S3CopyProcessor
import SearchTextProcessor
import StatusUpdateProcessor
import Supervisor
import UploaderProcessor

/// One binary for every Swift executable of the package, chosen by the name it is started as
/// (`argv[0]`, through a symbolic link: `exchanger-s3-copy -> exchanger-multicall`). The container
/// image ships this instead of ten binaries that would each carry their own copy of SwiftNIO,
/// BoringSSL, Hummingbird and the rest (docker/stage-binaries.sh, docs/containers.md).
/// `exchanger-multicall --programs` lists the names it answers to.
@main
enum MulticallMain {
    static let programs: [String] = [
        "exchanger", "exchanger-s3-copy", "exchanger-status-update", "exchanger-dlq", "exchanger-supervisor", "exchanger-orchestrator",
        "exchanger-uploader", "exchanger-pre-uploader", "exchanger-re-ocr", "exchanger-search-text",
    ]

    static func main() async {
        let invoked = CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "") } ?? ""
        switch invoked {
        case "exchanger":
            ProcessSignals.install()
            await ExchangerCommand.main(nil)
        case "exchanger-s3-copy": await S3CopyCommand.main(nil)
        case "exchanger-status-update": await StatusUpdateCommand.main(nil)
        case "exchanger-dlq": await DeadLetterCommand.main(nil)
        case "exchanger-supervisor": await SupervisorCommand.main(nil)
        case "exchanger-orchestrator": await OrchestratorCommand.main(nil)
        case "exchanger-uploader": await UploaderCommand.main(nil)
        case "exchanger-pre-uploader": await PreUploaderCommand.main(nil)
        case "exchanger-re-ocr": await ReOCRCommand.main(nil)
        case "exchanger-search-text": await SearchTextCommand.main(nil)
        default:
            if CommandLine.arguments.dropFirst().first == "--programs" {
                print(programs.joined(separator: "\n"))
                return
            }
            let message = "exchanger-multicall: started as '\(invoked)'; link it as one of: \(programs.joined(separator: ", ")) (or --programs)\n"
            FileHandle.standardError.write(Data(message.utf8))
            exit(2)
        }
    }
}
