import SearchTextProcessor

/// Entry point of `exchanger-search-text`; everything lives in the SearchTextProcessor library.
@main
enum SearchTextMain {
    static func main() async {
        await SearchTextCommand.main(nil)
    }
}
