import ExchangerCLI
import ProcessSupport

/// Entry point of `exchanger`: signals become async events before any command runs.
@main
enum ExchangerMain {
    static func main() async {
        ProcessSignals.install()
        await ExchangerCommand.main(nil)
    }
}
