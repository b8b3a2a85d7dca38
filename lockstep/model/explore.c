/* lockstep: breadth-first explorer, the generic half.
 *
 * The model-specific half (NV, NVP, MAXSUCC, NPROPS, successors(), canon(),
 * state and step checks) is generated from the model's Expr trees by
 * cengine.py and prepended to this file. A state is NVP bytes, one byte per
 * state variable, zero padded to a multiple of 8.
 *
 * Invariants:
 *  - states are numbered in BFS order: id order is distance order, so the
 *    first state found with a property violation ends a shortest trace;
 *  - arena[id * NVP] holds state id; parent[id] its BFS parent (-1 for 0);
 *  - the hash table maps a state to its id; EMPTY marks a free slot;
 *  - succ_off[id] .. succ_off[id + 1] index state id's successor ids in edges.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned char u8;
/*@DEFINES@*/

/* A table slot: the state's id in the low 32 bits, the high half of its hash in the
 * high 32, so that most mismatching probes are told apart without touching the arena. */
#define EMPTY 0xFFFFFFFFFFFFFFFFull

typedef struct {
    u8 *arena;
    int32_t *parent;
    uint64_t *table;
    uint64_t table_mask;
    uint64_t n, cap;
    uint32_t *edges;
    uint64_t n_edges, cap_edges;
    uint64_t *succ_off;
    /* results */
    uint64_t transitions;
    int64_t depth;
    int complete;
    int64_t deadlock_at;
    int64_t first_state[NPROPS];
    int64_t first_k[NPROPS];
    int64_t first_target[NPROPS];
    int64_t rc_bad; /* requests_complete: first state (BFS order) that cannot complete, -1 none */
    int oom;
    int64_t *deadlocks; /* every deadlock state, in BFS order */
    uint64_t n_deadlocks, cap_deadlocks;
} explorer_t;

/*@GENERATED@*/

static uint64_t hash_state(const u8 *s) {
    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < NVP; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h ^= w;
        h *= 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    return h;
}

static int grow_table(explorer_t *e) {
    uint64_t size = (e->table_mask + 1) * 2;
    uint64_t *t = malloc(size * sizeof(uint64_t));
    if (!t) return 0;
    memset(t, 0xFF, size * sizeof(uint64_t));
    for (uint64_t i = 0; i <= e->table_mask; i++) {
        uint64_t slot = e->table[i];
        if (slot == EMPTY) continue;
        uint64_t id = slot & 0xFFFFFFFFull;
        uint64_t h = hash_state(e->arena + id * NVP) & (size - 1);
        while (t[h] != EMPTY) h = (h + 1) & (size - 1);
        t[h] = slot;
    }
    free(e->table);
    e->table = t;
    e->table_mask = size - 1;
    return 1;
}

/* The id of state s, inserting it (with parent p) if new; -1 when out of memory. */
static int64_t intern(explorer_t *e, const u8 *s, int32_t p, int *is_new) {
    uint64_t full = hash_state(s);
    uint64_t tag = full & 0xFFFFFFFF00000000ull;
    uint64_t h = full & e->table_mask;
    for (;;) {
        uint64_t slot = e->table[h];
        if (slot == EMPTY) break;
        if ((slot & 0xFFFFFFFF00000000ull) == tag) {
            uint64_t id = slot & 0xFFFFFFFFull;
            if (memcmp(e->arena + id * NVP, s, NVP) == 0) {
                *is_new = 0;
                return (int64_t)id;
            }
        }
        h = (h + 1) & e->table_mask;
    }
    if (e->n == e->cap) {
        uint64_t cap = e->cap * 2;
        u8 *a = realloc(e->arena, cap * NVP);
        if (!a) return -1;
        e->arena = a;
        int32_t *pa = realloc(e->parent, cap * sizeof(int32_t));
        if (!pa) return -1;
        e->parent = pa;
        uint64_t *so = realloc(e->succ_off, (cap + 1) * sizeof(uint64_t));
        if (!so) return -1;
        e->succ_off = so;
        e->cap = cap;
    }
    uint64_t id = e->n++;
    memcpy(e->arena + id * NVP, s, NVP);
    e->parent[id] = p;
    e->table[h] = tag | id;
    *is_new = 1;
    if (e->n * 2 > e->table_mask + 1 && !grow_table(e)) return -1;
    return (int64_t)id;
}

static int add_edge(explorer_t *e, uint32_t t) {
    if (e->n_edges == e->cap_edges) {
        uint64_t cap = e->cap_edges * 2;
        uint32_t *a = realloc(e->edges, cap * sizeof(uint32_t));
        if (!a) return 0;
        e->edges = a;
        e->cap_edges = cap;
    }
    e->edges[e->n_edges++] = t;
    return 1;
}

explorer_t *lockstep_new(void) {
    explorer_t *e = calloc(1, sizeof(explorer_t));
    if (!e) return NULL;
    e->cap = 1 << 16;
    e->arena = malloc(e->cap * NVP);
    e->parent = malloc(e->cap * sizeof(int32_t));
    e->succ_off = malloc((e->cap + 1) * sizeof(uint64_t));
    e->table_mask = (1 << 17) - 1;
    e->table = malloc((e->table_mask + 1) * sizeof(uint64_t));
    e->cap_edges = 1 << 18;
    e->edges = malloc(e->cap_edges * sizeof(uint32_t));
    if (!e->arena || !e->parent || !e->succ_off || !e->table || !e->edges) return NULL;
    memset(e->table, 0xFF, (e->table_mask + 1) * sizeof(uint64_t));
    return e;
}

void lockstep_free(explorer_t *e) {
    if (!e) return;
    free(e->arena); free(e->parent); free(e->succ_off); free(e->table); free(e->edges); free(e->deadlocks);
    free(e);
}

uint64_t lockstep_count(explorer_t *e) { return e->n; }
const u8 *lockstep_state(explorer_t *e, uint64_t id) { return e->arena + id * NVP; }
int32_t lockstep_parent(explorer_t *e, uint64_t id) { return e->parent[id]; }
uint64_t lockstep_transitions(explorer_t *e) { return e->transitions; }
int64_t lockstep_depth(explorer_t *e) { return e->depth; }
int lockstep_complete(explorer_t *e) { return e->complete; }
int lockstep_oom(explorer_t *e) { return e->oom; }
int64_t lockstep_deadlock_at(explorer_t *e) { return e->deadlock_at; }
int64_t lockstep_first_state(explorer_t *e, int p) { return e->first_state[p]; }
int64_t lockstep_first_k(explorer_t *e, int p) { return e->first_k[p]; }
int64_t lockstep_first_target(explorer_t *e, int p) { return e->first_target[p]; }
int64_t lockstep_rc_bad(explorer_t *e) { return e->rc_bad; }
uint64_t lockstep_n_deadlocks(explorer_t *e) { return e->n_deadlocks; }
int64_t lockstep_deadlock(explorer_t *e, uint64_t i) { return e->deadlocks[i]; }

/* Successors of one state (bytes), for trace reconstruction: returns the count;
 * out receives count * NVP bytes, kinds the transition indices. */
int lockstep_successors(const u8 *s, u8 *out, int *kinds) {
    u8 buf[NVP];
    memcpy(buf, s, NVP);
    return successors(buf, out, kinds);
}

void lockstep_canon(const u8 *s, u8 *out) {
    memcpy(out, s, NVP);
    canon(out);
}

/* requests_complete: walk reverse edges from the states where every request has
 * returned; the first state (BFS order) not reached cannot complete. */
static void requests_complete(explorer_t *e) {
    uint64_t n = e->n;
    uint64_t *start = calloc(n + 1, sizeof(uint64_t));
    uint32_t *rev = malloc((e->n_edges ? e->n_edges : 1) * sizeof(uint32_t));
    u8 *good = calloc(n, 1);
    uint32_t *stack = malloc(n * sizeof(uint32_t));
    if (!start || !rev || !good || !stack) { e->oom = 1; e->rc_bad = -2; goto out; }
    for (uint64_t j = 0; j < e->n_edges; j++) start[e->edges[j] + 1]++;
    for (uint64_t i = 0; i < n; i++) start[i + 1] += start[i];
    {
        uint64_t *fill = malloc((n + 1) * sizeof(uint64_t));
        if (!fill) { e->oom = 1; e->rc_bad = -2; goto out; }
        memcpy(fill, start, (n + 1) * sizeof(uint64_t));
        for (uint64_t src = 0; src < n; src++)
            for (uint64_t j = e->succ_off[src]; j < e->succ_off[src + 1]; j++)
                rev[fill[e->edges[j]]++] = (uint32_t)src;
        free(fill);
    }
    uint64_t top = 0;
    for (uint64_t i = 0; i < n; i++)
        if (all_returned(e->arena + i * NVP)) { good[i] = 1; stack[top++] = (uint32_t)i; }
    while (top) {
        uint32_t t = stack[--top];
        for (uint64_t j = start[t]; j < start[t + 1]; j++) {
            uint32_t src = rev[j];
            if (!good[src]) { good[src] = 1; stack[top++] = src; }
        }
    }
    e->rc_bad = -1;
    for (uint64_t i = 0; i < n; i++) if (!good[i]) { e->rc_bad = (int64_t)i; break; }
out:
    free(start); free(rev); free(good); free(stack);
}

int lockstep_explore(explorer_t *e, const u8 *init, uint64_t max_states, int64_t max_depth,
                     int use_canon, int want_rc, int stop_when_decided) {
    static u8 out[MAXSUCC * NVP];
    static int kinds[MAXSUCC];
    u8 s0[NVP];
    int is_new;
    for (int p = 0; p < NPROPS; p++) { e->first_state[p] = -1; e->first_k[p] = -1; e->first_target[p] = -1; }
    e->deadlock_at = -1;
    e->rc_bad = -1;
    memcpy(s0, init, NVP);
    if (use_canon) canon(s0);
    if (intern(e, s0, -1, &is_new) < 0) { e->oom = 1; return -1; }
    uint64_t head = 0, level_end = 1;
    int64_t depth = 0;
    int complete = 1;
    e->succ_off[0] = 0;
    while (head < e->n) {
        if (head == level_end) {
            depth++;
            level_end = e->n;
            if (max_depth >= 0 && depth > max_depth) { complete = 0; break; }
        }
        uint64_t sid = head++;
        u8 s[NVP];
        memcpy(s, e->arena + sid * NVP, NVP);
        state_checks(e, s, (int64_t)sid);
        int n = successors(s, out, kinds);
        if (n == 0 && someone_running(s)) {
            if (e->deadlock_at < 0) e->deadlock_at = (int64_t)sid;
            if (e->n_deadlocks == e->cap_deadlocks) {
                uint64_t cap = e->cap_deadlocks ? e->cap_deadlocks * 2 : 1024;
                int64_t *d = realloc(e->deadlocks, cap * sizeof(int64_t));
                if (!d) { e->oom = 1; return -1; }
                e->deadlocks = d;
                e->cap_deadlocks = cap;
            }
            e->deadlocks[e->n_deadlocks++] = (int64_t)sid;
        }
        for (int j = 0; j < n; j++) {
            u8 *t = out + (uint64_t)j * NVP;
            int decided = step_checks(e, s, t, kinds[j], (int64_t)sid);
            if (use_canon) canon(t);
            int64_t tid = intern(e, t, (int32_t)sid, &is_new);
            if (tid < 0) { e->oom = 1; return -1; }
            for (int p = 0; decided; p++, decided >>= 1)
                if (decided & 1) e->first_target[p] = tid;
            if (want_rc && !add_edge(e, (uint32_t)tid)) { e->oom = 1; return -1; }
        }
        e->succ_off[sid + 1] = e->n_edges;
        e->transitions += (uint64_t)n;
        if (max_states && e->n >= max_states && head < e->n) { complete = 0; break; }
        if ((stop_when_decided & 1) && e->deadlock_at >= 0 && always_decided(e)) { complete = 0; break; }
        if ((stop_when_decided & 2) && e->deadlock_at >= 0) { complete = 0; break; }
    }
    e->depth = depth;
    e->complete = complete && head >= e->n;
    if (want_rc && e->complete) requests_complete(e);
    else e->rc_bad = -3; /* not computed */
    return 0;
}
