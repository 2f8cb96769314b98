/* s6fin.c - ./finish of the s6 services in the "start N and wait" workload:
 * keeps the service down (exit 125) and, once the N-th service has finished,
 * tells s6-svscan to exit. Its cwd is the service dir; ../.count (appended to)
 * and ../.expect (N) are in the scan dir. Build: cc -O2 -o s6fin s6fin.c */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void) {
    char buf[32] = {0};
    long n = 1;
    int e = open("../.expect", O_RDONLY);
    if (e >= 0 && read(e, buf, sizeof buf - 1) > 0) n = atol(buf);
    int fd = open("../.count", O_WRONLY | O_APPEND | O_CREAT, 0600);
    struct stat st;
    if (fd >= 0 && write(fd, "x", 1) == 1 && fstat(fd, &st) == 0 && st.st_size == n && fork() == 0) {
        execlp("s6-svscanctl", "s6-svscanctl", "-t", "..", (char *)0);
        _exit(127);
    }
    return 125;
}
