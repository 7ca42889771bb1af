import DeadLetterProcessor

/// Entry point of `exchanger-dlq`; everything lives in the DeadLetterProcessor library.
@main
enum DeadLetterMain {
    static func main() async {
        await DeadLetterCommand.main(nil)
    }
}
