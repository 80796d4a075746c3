// user_stream.cpp: print a Binance USD-M Futures account's user data events
// as they arrive, with the C++ layer (binance_uds.hpp). The library keeps
// the listenKey alive, renews it and reconnects; a "binance.stream_gap"
// event says events may have been lost (resynchronise over REST then).
//
// Environment:
//   BINANCE_API_KEY     your API key (required; never printed)
//   BINANCE_WS_API_URL  the WebSocket API endpoint (default: production)
//   BINANCE_STREAM_URL  the user data stream base URL (default: production)
//   BINANCE_CA_FILE     a PEM file of extra CA certificates to trust
//                       (optional; e.g. the local exchange's)
//   BINANCE_MAX_EVENTS  stop after this many events (optional; default:
//                       run until interrupted)
//
// Build:
//   c++ -std=c++17 -Iinclude examples/cpp/user_stream.cpp -Ltarget/release -lbinance_uds -o user_stream

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "binance_uds.hpp"

namespace {

const char *env(const char *name, const char *fallback)
{
    const char *value = std::getenv(name);
    return value != nullptr && *value != '\0' ? value : fallback;
}

}  // namespace

int main()
{
    const char *api_key = env("BINANCE_API_KEY", nullptr);
    const char *url = env("BINANCE_WS_API_URL", BINANCE_WS_API_URL_PRODUCTION);
    const char *stream_url = env("BINANCE_STREAM_URL", BINANCE_STREAM_URL_PRODUCTION);
    const char *ca_file = env("BINANCE_CA_FILE", nullptr);
    const char *max_text = env("BINANCE_MAX_EVENTS", "0");

    if (api_key == nullptr) {
        std::cerr << "BINANCE_API_KEY is not set: export your Binance API key in it\n";
        return EXIT_FAILURE;
    }
    char *end = nullptr;
    const long max_events = std::strtol(max_text, &end, 10);
    if (*end != '\0' || max_events < 0) {
        std::cerr << "BINANCE_MAX_EVENTS must be a number of events, not \"" << max_text << "\"\n";
        return EXIT_FAILURE;
    }
    std::string ca_pem;
    if (ca_file != nullptr) {
        std::ifstream file(ca_file, std::ios::binary);
        std::ostringstream pem;
        if (!(file && pem << file.rdbuf())) {
            std::cerr << ca_file << ": cannot read the CA file\n";
            return EXIT_FAILURE;
        }
        ca_pem = pem.str();
    }
    std::cout << "binance-uds " << binance::version() << ", stream " << stream_url << std::endl;

    try {
        binance::config cfg;
        cfg.api_key(api_key).endpoint(url).stream_endpoint(stream_url);
        if (!ca_pem.empty())
            cfg.add_root_certificate_pem(ca_pem);
        binance::client client(cfg);
        binance::user_stream stream(client);
        std::cout << "connected; waiting for events" << std::endl;

        long seen = 0;
        for (const binance::event &ev : stream.events()) {
            std::cout << ev.type() << " E=" << ev.time_ms();
            if (ev.type() == "ORDER_TRADE_UPDATE")
                std::cout << " symbol=" << ev.get("/o/s") << " status=" << ev.get("/o/X");
            else if (ev.is_library())
                std::cout << ' ' << ev.json();
            std::cout << std::endl;
            if (max_events > 0 && ++seen == max_events)
                break;
        }
        // The stream closes here (the listenKey stays valid for others).
    } catch (const binance::error &e) {
        std::cerr << "error: " << e.status_name() << " (API code " << e.api_code() << ", HTTP status "
                  << e.http_status() << "): " << e.message() << '\n';
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
