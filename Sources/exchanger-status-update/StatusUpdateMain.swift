import StatusUpdateProcessor

/// Entry point of `exchanger-status-update`; everything lives in the StatusUpdateProcessor library.
@main
enum StatusUpdateMain {
    static func main() async {
        await StatusUpdateCommand.main(nil)
    }
}
