#include <memory>
#include <string>
#include <vector>

struct Shape {
    virtual ~Shape() = default;
    virtual double area() const = 0;
    virtual std::string name() const = 0;
};

struct Square : Shape {
    double s;
    explicit Square(double s) : s(s) {}
    double area() const override { return s * s; }
    std::string name() const override { return "square"; }
};

double total_area(const std::vector<std::unique_ptr<Shape>> &v) {
    double t = 0;
    for (const auto &s : v) t += s->area();
    return t;
}

std::vector<std::unique_ptr<Shape>> make_shapes(int n) {
    std::vector<std::unique_ptr<Shape>> v;
    for (int i = 0; i < n; i++) v.push_back(std::make_unique<Square>(i));
    return v;
}
