/*
 * The hardware profile: parsers of /proc and cgroup file contents on sample
 * texts (v1, v2, hybrid, unlimited), the JSON round trip and its refusals,
 * the static probe, and a short storage measurement in the working
 * directory (the build tree, on a real filesystem) returning positive numbers.
 */
#include <fcntl.h>
#include <unistd.h>

#include "check.h"
#include "hw/hw.h"
#include "hw/hw_storage.h"

static void test_meminfo(void)
{
    uint64_t total, avail;
    hw_parse_meminfo("MemTotal:       24681234 kB\nMemFree:         1000 kB\nMemAvailable:   2000000 kB\n"
                     "Buffers: 12 kB\n",
                     &total, &avail);
    CHECK_EQ_U64(total, 24681234ull * 1024);
    CHECK_EQ_U64(avail, 2000000ull * 1024);
    hw_parse_meminfo("MemTotal: 100 kB\n", &total, &avail);
    CHECK_EQ_U64(total, 102400);
    CHECK_EQ_U64(avail, 0);
    hw_parse_meminfo("", &total, &avail);
    CHECK_EQ_U64(total, 0);
}

static void test_proc_cgroup(void)
{
    char path[256];
    /* v1 (this kind of machine): the memory controller's line wins */
    const char *v1 = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/fb9f35\n3:cpuset:/\n0::/\n";
    CHECK_EQ_INT(hw_parse_proc_cgroup(v1, path, sizeof path), 1);
    CHECK_EQ_STR(path, "/process_api/fb9f35");
    /* v1 with controllers mounted together */
    CHECK_EQ_INT(hw_parse_proc_cgroup("5:cpu,memory,cpuacct:/docker/abc\n", path, sizeof path), 1);
    CHECK_EQ_STR(path, "/docker/abc");
    /* "memory" must be a whole controller name */
    CHECK_EQ_INT(hw_parse_proc_cgroup("5:memoryx:/a\n", path, sizeof path), 0);
    /* pure v2 */
    CHECK_EQ_INT(hw_parse_proc_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n", path, sizeof path), 2);
    CHECK_EQ_STR(path, "/user.slice/user-1000.slice/session-2.scope");
    /* v2 line first, v1 memory line later: v1 holds the memory controller */
    CHECK_EQ_INT(hw_parse_proc_cgroup("0::/x\n4:memory:/y", path, sizeof path), 1);
    CHECK_EQ_STR(path, "/y");
    CHECK_EQ_INT(hw_parse_proc_cgroup("", path, sizeof path), 0);
    CHECK_EQ_INT(hw_parse_proc_cgroup("garbage\n", path, sizeof path), 0);
}

static void test_cgroup_limit(void)
{
    uint64_t v = 7;
    CHECK(!hw_parse_cgroup_limit("max\n", &v));
    CHECK(!hw_parse_cgroup_limit("9223372036854771712\n", &v)); /* v1 unlimited */
    CHECK(!hw_parse_cgroup_limit("", &v));
    CHECK(!hw_parse_cgroup_limit("12abc\n", &v));
    CHECK(!hw_parse_cgroup_limit("-5\n", &v));
    CHECK_EQ_U64(v, 7);
    CHECK(hw_parse_cgroup_limit("8589934592\n", &v));
    CHECK_EQ_U64(v, 8589934592ull);
    CHECK(hw_parse_cgroup_limit("0", &v));
    CHECK_EQ_U64(v, 0);
}

static void test_cache_size(void)
{
    CHECK_EQ_U64(hw_parse_cache_size("32K\n"), 32768);
    CHECK_EQ_U64(hw_parse_cache_size("32768K\n"), 32ull << 20);
    CHECK_EQ_U64(hw_parse_cache_size("300M"), 300ull << 20);
    CHECK_EQ_U64(hw_parse_cache_size("1G\n"), 1ull << 30);
    CHECK_EQ_U64(hw_parse_cache_size("4096"), 4096);
    CHECK_EQ_U64(hw_parse_cache_size(""), 0);
    CHECK_EQ_U64(hw_parse_cache_size("K"), 0);
    CHECK_EQ_U64(hw_parse_cache_size("12X"), 0);
    CHECK_EQ_U64(hw_parse_cache_size("-5K"), 0);
    CHECK_EQ_U64(hw_parse_cache_size("99999999999999999999K"), 0);
    CHECK_EQ_U64(hw_parse_cache_size("18014398509481984K"), 0); /* 2^54 KiB overflows */
    /* a probe is at least its floor, at most HW_PROBE_MAX_BYTES unless the floor is above it,
     * and twice the largest cache when that is between */
    const uint64_t llc = hw_llc_bytes(), floor = (uint64_t)64 << 20;
    const uint64_t b = hw_probe_bytes(floor);
    CHECK(b >= floor);
    CHECK(b <= HW_PROBE_MAX_BYTES);
    if (llc > floor / 2 && llc <= HW_PROBE_MAX_BYTES / 2) CHECK_EQ_U64(b, 2 * llc);
    CHECK_EQ_U64(hw_probe_bytes((uint64_t)2 << 30), (uint64_t)2 << 30);
}

static void fill(struct hw_profile *p)
{
    memset(p, 0, sizeof *p);
    p->version = HW_PROFILE_VERSION;
    p->created_unix = 1763700000;
    snprintf(p->cpu_model, sizeof p->cpu_model, "Test CPU \"quoted\" @ 3.0GHz");
    p->physical_cores = 8;
    p->logical_cpus = 16;
    snprintf(p->simd, sizeof p->simd, "avx2");
    p->ram_total_bytes = 64ull << 30;
    p->ram_available_bytes = 60ull << 30;
    p->cgroup_version = 2;
    p->cgroup_limit_bytes = 16ull << 30;
    p->cgroup_usage_bytes = 1ull << 30;
    p->n_gpu = 2;
    for (int i = 0; i < 2; i++) {
        snprintf(p->gpus[i].name, sizeof p->gpus[i].name, "GPU %d", i);
        p->gpus[i].total_bytes = 80ull << 30;
        p->gpus[i].free_bytes = (79ull << 30) + (uint64_t)i;
        p->gpus[i].cc_major = 9;
        p->gpus[i].cc_minor = i;
    }
    p->has_storage = true;
    snprintf(p->storage.dir, sizeof p->storage.dir, "/models");
    p->storage.file_bytes = 256u << 20;
    for (int i = 0; i < HW_N_REQ_SIZES; i++)
        for (int j = 0; j < HW_N_QDS; j++) p->storage.read_bytes_per_s[i][j] = 1e9 * (i + 1) + 1e6 * j + 0.25;
    p->storage.best_req_bytes = 16u << 20;
    p->storage.best_queue_depth = 32;
    p->storage.best_read_bytes_per_s = 5e9 + 4e6 + 0.25;
    p->storage.rand4k_iops = 12345.5;
    p->storage.rand4k_latency_us = 81.0;
    p->ram_read_bytes_per_s_1t = 12.5e9;
    p->ram_read_bytes_per_s_all = 40.25e9;
    p->ram_threads = 16;
    p->matvec_threads = 8;
    p->n_matvec = 3;
    p->matvec[0] = (struct hw_matvec){HY_TYPE_Q4_K, 20.5e9};
    p->matvec[1] = (struct hw_matvec){HY_TYPE_Q8_0, 30e9};
    p->matvec[2] = (struct hw_matvec){HY_TYPE_F16, 31e9};
}

static bool same(const struct hw_profile *a, const struct hw_profile *b)
{
    bool ok = CHECK_EQ_INT(a->version, b->version) && CHECK_EQ_INT(a->created_unix, b->created_unix) &&
              CHECK_EQ_STR(a->cpu_model, b->cpu_model) && CHECK_EQ_INT(a->physical_cores, b->physical_cores) &&
              CHECK_EQ_INT(a->logical_cpus, b->logical_cpus) && CHECK_EQ_STR(a->simd, b->simd) &&
              CHECK_EQ_U64(a->ram_total_bytes, b->ram_total_bytes) &&
              CHECK_EQ_U64(a->ram_available_bytes, b->ram_available_bytes) &&
              CHECK_EQ_INT(a->cgroup_version, b->cgroup_version) &&
              CHECK_EQ_U64(a->cgroup_limit_bytes, b->cgroup_limit_bytes) &&
              CHECK_EQ_U64(a->cgroup_usage_bytes, b->cgroup_usage_bytes) && CHECK_EQ_INT(a->n_gpu, b->n_gpu) &&
              CHECK_EQ_INT(a->has_storage, b->has_storage) &&
              CHECK(a->ram_read_bytes_per_s_1t == b->ram_read_bytes_per_s_1t) &&
              CHECK(a->ram_read_bytes_per_s_all == b->ram_read_bytes_per_s_all) &&
              CHECK_EQ_INT(a->ram_threads, b->ram_threads) && CHECK_EQ_INT(a->matvec_threads, b->matvec_threads) &&
              CHECK_EQ_INT(a->n_matvec, b->n_matvec);
    if (!ok) return false;
    for (int i = 0; i < a->n_gpu; i++)
        ok = ok && CHECK_EQ_STR(a->gpus[i].name, b->gpus[i].name) &&
             CHECK_EQ_U64(a->gpus[i].total_bytes, b->gpus[i].total_bytes) &&
             CHECK_EQ_U64(a->gpus[i].free_bytes, b->gpus[i].free_bytes) &&
             CHECK_EQ_INT(a->gpus[i].cc_major, b->gpus[i].cc_major) &&
             CHECK_EQ_INT(a->gpus[i].cc_minor, b->gpus[i].cc_minor);
    if (a->has_storage) {
        const struct hw_storage *s = &a->storage, *t = &b->storage;
        ok = ok && CHECK_EQ_STR(s->dir, t->dir) && CHECK_EQ_U64(s->file_bytes, t->file_bytes) &&
             CHECK_EQ_U64(s->best_req_bytes, t->best_req_bytes) &&
             CHECK_EQ_INT(s->best_queue_depth, t->best_queue_depth) &&
             CHECK(s->best_read_bytes_per_s == t->best_read_bytes_per_s) && CHECK(s->rand4k_iops == t->rand4k_iops) &&
             CHECK(s->rand4k_latency_us == t->rand4k_latency_us);
        for (int i = 0; i < HW_N_REQ_SIZES; i++)
            for (int j = 0; j < HW_N_QDS; j++) ok = ok && CHECK(s->read_bytes_per_s[i][j] == t->read_bytes_per_s[i][j]);
    }
    for (int i = 0; i < a->n_matvec; i++)
        ok = ok && CHECK_EQ_INT(a->matvec[i].type, b->matvec[i].type) &&
             CHECK(a->matvec[i].bytes_per_s == b->matvec[i].bytes_per_s);
    return ok;
}

static void test_json_roundtrip(void)
{
    static struct hw_profile a, b, c;
    fill(&a);
    char *text = hw_profile_to_json(&a);
    if (!CHECK_OK(hw_profile_from_json(text, &b))) {
        free(text);
        return;
    }
    CHECK(same(&a, &b));
    CHECK_EQ_U64(hw_available_bytes(&b), 15ull << 30); /* cgroup limit - usage < MemAvailable */
    CHECK(hw_matvec_bytes_per_s(&b, HY_TYPE_Q8_0) == 30e9);
    CHECK(hw_matvec_bytes_per_s(&b, HY_TYPE_Q2_K) == 0);
    free(text);

    /* no cgroup, no GPU, no storage */
    a.cgroup_version = 0;
    a.cgroup_limit_bytes = a.cgroup_usage_bytes = 0;
    a.n_gpu = 0;
    a.has_storage = false;
    memset(&a.storage, 0, sizeof a.storage);
    memset(a.gpus, 0, sizeof a.gpus);
    text = hw_profile_to_json(&a);
    CHECK_OK(hw_profile_from_json(text, &b));
    CHECK(same(&a, &b));
    CHECK_EQ_U64(hw_available_bytes(&b), 60ull << 30);
    free(text);

    /* through a file */
    fill(&a);
    CHECK_OK(hw_profile_save(&a, "test_hw_profile.json"));
    CHECK_OK(hw_profile_load("test_hw_profile.json", &c));
    CHECK(same(&a, &c));
    remove("test_hw_profile.json");
    CHECK_STATUS(hw_profile_load("test_hw_no_such_file.json", &c), HY_ERR_IO);

    /* refusals */
    CHECK_STATUS(hw_profile_from_json("{", &b), HY_ERR_FORMAT);
    CHECK_STATUS(hw_profile_from_json("[]", &b), HY_ERR_FORMAT);
    CHECK_STATUS(hw_profile_from_json("{\"version\": 999}", &b), HY_ERR_UNSUPPORTED);
    CHECK_STATUS(hw_profile_from_json("{\"version\": 1, \"created_unix\": 5}", &b), HY_ERR_FORMAT);
    CHECK_CONTAINS(err_msg(), "\"cpu\"");
}

static void test_probe(void)
{
    static struct hw_profile p;
    hw_probe_static(&p);
    CHECK(p.physical_cores >= 1);
    CHECK(p.logical_cpus >= p.physical_cores);
    CHECK(p.ram_total_bytes > 0);
    CHECK(p.ram_available_bytes > 0 && p.ram_available_bytes <= p.ram_total_bytes);
    CHECK(p.cpu_model[0] != '\0');
    CHECK(p.simd[0] != '\0');
    CHECK(hw_available_bytes(&p) > 0);
}

static void test_storage(void)
{
    static struct hw_storage s;
    /* 16 MiB file, 4 MiB per cell, 20 ms per cell: well under a second */
    enum hy_status st = hw_storage_measure(".", 16u << 20, 4u << 20, 20000, NULL, NULL, 0, 0, &s);
    if (st == HY_ERR_UNSUPPORTED) {
        printf("test_hw: storage test skipped: %s\n", err_msg());
        return;
    }
    if (!CHECK_OK(st)) return;
    CHECK(s.best_read_bytes_per_s > 0);
    CHECK(s.best_req_bytes >= (64u << 10));
    CHECK(s.best_queue_depth >= 1);
    CHECK(s.rand4k_iops > 0);
    CHECK(s.rand4k_latency_us > 0);
    for (int i = 0; i < HW_N_REQ_SIZES; i++)
        for (int j = 0; j < HW_N_QDS; j++) CHECK(s.read_bytes_per_s[i][j] > 0);
    /* the test file is gone */
    CHECK(access(".hypura-iotest-0", F_OK) != 0);

    /* hw_storage_run on an ordinary file: every request read, EOF short */
    FILE *f = fopen("test_hw_run.bin", "wb");
    if (!CHECK(f != NULL)) return;
    static char buf[3 * 4096 + 100];
    memset(buf, 1, sizeof buf);
    fwrite(buf, 1, sizeof buf, f);
    fclose(f);
    int fd = open("test_hw_run.bin", O_RDONLY);
    struct hw_storage_req reqs[4] = {{0, 4096}, {4096, 4096}, {8192, 4096}, {12288, 4096}};
    struct hw_storage_result r;
    CHECK_OK(hw_storage_run(fd, reqs, 4, 3, 0, 0, &r));
    CHECK_EQ_U64(r.bytes, sizeof buf);
    CHECK_EQ_U64(r.n_reqs, 4);
    /* a time limit already past when the threads start still reads one request */
    CHECK_OK(hw_storage_run(fd, reqs, 4, 2, 0, 1, &r));
    CHECK(r.n_reqs >= 1 && r.bytes >= 4096);
    CHECK_STATUS(hw_storage_run(fd, reqs, 4, 0, 0, 0, &r), HY_ERR_INVALID_ARG);
    close(fd);
    CHECK_STATUS(hw_storage_run(fd, reqs, 4, 2, 0, 0, &r), HY_ERR_IO); /* closed descriptor */
    remove("test_hw_run.bin");
}

int main(void)
{
    test_meminfo();
    test_proc_cgroup();
    test_cgroup_limit();
    test_cache_size();
    test_json_roundtrip();
    test_probe();
    test_storage();
    return check_report("test_hw");
}
