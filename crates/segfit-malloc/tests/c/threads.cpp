// Multi-threaded C++ churn: std::thread workers build and tear down std::map<std::string, ...>
// and vectors; the output is deterministic (checksums), so runs under glibc and segfit compare.
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>
#include <memory>

static unsigned long work(int id) {
    unsigned long sum = 0;
    for (int round = 0; round < 40; round++) {
        std::map<std::string, std::vector<int>> m;
        for (int i = 0; i < 2000; i++) {
            std::string k = "key-" + std::to_string(id) + "-" + std::to_string((i * 7919) % 1500);
            m[k].push_back(i);
        }
        for (auto &kv : m) sum += kv.first.size() * kv.second.size() + kv.second.back();
        std::vector<std::unique_ptr<std::string>> v;
        for (int i = 0; i < 3000; i++) v.emplace_back(new std::string(std::string(i % 300, 'x')));
        for (auto &s : v) sum += s->size();
    }
    return sum;
}

int main() {
    std::vector<std::thread> ts;
    std::vector<unsigned long> out(8);
    for (int t = 0; t < 8; t++) ts.emplace_back([t, &out] { out[t] = work(t); });
    for (auto &t : ts) t.join();
    for (int t = 0; t < 8; t++) std::printf("thread %d checksum %lu\n", t, out[t]);
    return 0;
}
