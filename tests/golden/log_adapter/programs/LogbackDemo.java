import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
public class LogbackDemo {
    public static void main(String[] args) throws Exception {
        Logger log = LoggerFactory.getLogger("com.example.orders.OrderService");
        log.debug("loaded {} rules", 12);
        log.info("order 42 accepted for customer \"ann\"");
        log.warn("payment gateway slow: {} ms", 1834);
        log.error("order 43 failed", new IllegalStateException("card declined"));
        Thread t = new Thread(() -> LoggerFactory.getLogger(LogbackDemo.class).info("worker done"), "pool-1-thread-1");
        t.start(); t.join();
    }
}
