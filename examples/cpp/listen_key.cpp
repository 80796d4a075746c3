// listen_key.cpp: obtain a Binance USD-M Futures listenKey, keep it alive,
// and close it, through the WebSocket API, from C++ with the C header.
//
// Environment:
//   BINANCE_API_KEY     your API key (required; never printed)
//   BINANCE_WS_API_URL  the WebSocket API endpoint (default: production)
//   BINANCE_CA_FILE     a PEM file of extra CA certificates to trust
//                       (optional; e.g. the local exchange's)
//
// Build:
//   c++ -std=c++17 -Iinclude examples/cpp/listen_key.cpp -Ltarget/release -lbinance_uds -o listen_key
//
// Note: stop closes the account's user data stream for every connection and
// process that uses this API key.

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "binance_uds.h"

namespace {

// Every handle the library gives out, owned by a unique_ptr that calls its
// _free function.
struct ConfigFree {
    void operator()(binance_config *p) const noexcept { binance_config_free(p); }
};
struct ClientFree {
    void operator()(binance_client *p) const noexcept { binance_client_free(p); }
};
struct ErrorFree {
    void operator()(binance_error *p) const noexcept { binance_error_free(p); }
};
struct StringFree {
    void operator()(char *p) const noexcept { binance_string_free(p); }
};
using Config = std::unique_ptr<binance_config, ConfigFree>;
using Client = std::unique_ptr<binance_client, ClientFree>;
using Error = std::unique_ptr<binance_error, ErrorFree>;
using String = std::unique_ptr<char, StringFree>;

// Runs one library call, `call(&err)`; on failure prints what failed and why
// and returns false. The error object is freed here either way.
template <typename Call>
bool succeeded(const char *what, Call call)
{
    binance_error *raw = nullptr;
    const binance_status status = call(&raw);
    const Error err(raw);
    if (status == BINANCE_OK)
        return true;
    std::cerr << what << " failed: " << binance_status_str(status) << " (API code "
              << binance_error_api_code(err.get()) << ", HTTP status " << binance_error_http_status(err.get())
              << "): " << binance_error_message(err.get()) << '\n';
    return false;
}

// The listenKey is a credential for the account's events: show its start.
std::string masked(const char *listen_key)
{
    return std::string(listen_key).substr(0, 4) + "\u2026";
}

const char *env(const char *name)
{
    const char *value = std::getenv(name);
    return value != nullptr && *value != '\0' ? value : nullptr;
}

}  // namespace

int main()
{
    const char *api_key = env("BINANCE_API_KEY");
    const char *url = env("BINANCE_WS_API_URL");
    const char *ca_file = env("BINANCE_CA_FILE");

    if (api_key == nullptr) {
        std::cerr << "BINANCE_API_KEY is not set: export your Binance API key in it\n";
        return EXIT_FAILURE;
    }
    if (url == nullptr)
        url = BINANCE_WS_API_URL_PRODUCTION;
    std::cout << "binance-uds " << binance_version() << ", endpoint " << url << '\n';

    const Config cfg(binance_config_new());
    if (!cfg) {
        std::cerr << "binance_config_new failed: out of memory\n";
        return EXIT_FAILURE;
    }
    if (!succeeded("binance_config_set_api_key",
                   [&](binance_error **err) { return binance_config_set_api_key(cfg.get(), api_key, err); }) ||
        !succeeded("binance_config_set_endpoint",
                   [&](binance_error **err) { return binance_config_set_endpoint(cfg.get(), url, err); }))
        return EXIT_FAILURE;
    if (ca_file != nullptr) {
        std::ifstream file(ca_file, std::ios::binary);
        std::ostringstream pem;
        if (!(file && pem << file.rdbuf())) {
            std::cerr << ca_file << ": cannot read the CA file\n";
            return EXIT_FAILURE;
        }
        if (!succeeded("binance_config_add_root_certificate_pem", [&](binance_error **err) {
                return binance_config_add_root_certificate_pem(cfg.get(), pem.str().c_str(), err);
            }))
            return EXIT_FAILURE;
    }

    binance_client *raw_client = nullptr;
    if (!succeeded("binance_client_new",
                   [&](binance_error **err) { return binance_client_new(cfg.get(), &raw_client, err); }))
        return EXIT_FAILURE;
    const Client client(raw_client);

    char *raw_key = nullptr;
    if (!succeeded("binance_listen_key_start",
                   [&](binance_error **err) { return binance_listen_key_start(client.get(), &raw_key, err); }))
        return EXIT_FAILURE;
    const String listen_key(raw_key);
    std::cout << "start: listenKey " << masked(listen_key.get()) << '\n';

    if (!succeeded("binance_listen_key_keepalive",
                   [&](binance_error **err) { return binance_listen_key_keepalive(client.get(), &raw_key, err); }))
        return EXIT_FAILURE;
    const String kept_alive(raw_key);
    // The server answers with the key it extended: if it is not the one we
    // hold, the new one is the one to use.
    std::cout << "keepalive: listenKey " << masked(kept_alive.get()) << " extended by 60 minutes"
              << (std::string(kept_alive.get()) == listen_key.get() ? "" : " (a new key: use this one)") << '\n';

    if (!succeeded("binance_listen_key_stop",
                   [&](binance_error **err) { return binance_listen_key_stop(client.get(), err); }))
        return EXIT_FAILURE;
    std::cout << "stop: listenKey closed\n";
    return EXIT_SUCCESS;
}
