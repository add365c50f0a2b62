// Device numbers as stat gives them (glibc's dev_t: the minor's low 8 bits,
// the major's 12, then the minor's upper bits).
export const devMajor = (dev: number): number => Math.floor(dev / 256) & 0xfff;
export const devMinor = (dev: number): number => (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00);
