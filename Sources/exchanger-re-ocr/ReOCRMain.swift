import ReOCRProcessor

/// Entry point of `exchanger-re-ocr`; everything lives in the ReOCRProcessor library.
@main
enum ReOCRMain {
    static func main() async {
        await ReOCRCommand.main(nil)
    }
}
