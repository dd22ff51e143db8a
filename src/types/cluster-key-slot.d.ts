// ioredis's own dependency, which computes a key's hash slot as Redis Cluster does.
declare module 'cluster-key-slot' {
  function calculateSlot(key: string | Buffer): number;
  export = calculateSlot;
}
