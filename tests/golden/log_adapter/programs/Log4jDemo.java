import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
public class Log4jDemo {
    public static void main(String[] args) throws Exception {
        Logger log = LogManager.getLogger("com.example.orders.OrderService");
        log.info("order 42 accepted");
        log.error("order 43 failed", new IllegalStateException("card declined"));
        log.fatal("cannot open database: {}", "jdbc:postgresql://db/orders");
    }
}
